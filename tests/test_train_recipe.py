"""`tools/train_shipped_model.py grow_state`: deepening the encoder (resnet18 → resnet34, same cut) keeps the network's outputs."""
import importlib.util
from pathlib import Path

import pytest
import torch

from hrtem_np.segment import _build_unet

spec = importlib.util.spec_from_file_location('train_shipped_model', Path(__file__).resolve().parents[1]/'tools'/'train_shipped_model.py')
recipe = importlib.util.module_from_spec(spec); spec.loader.exec_module(recipe)


def _trained_like(arch, cut=-3, seed=0):
    "A U-Net whose BatchNorms have non-trivial scales, shifts and running statistics, as after training."
    torch.manual_seed(seed)
    m = _build_unet(arch, 1, 2, 64, cut)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 1.5); mod.bias.data.uniform_(-0.2, 0.2)
            mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def test_grown_encoder_computes_what_the_source_did():
    src, big = _trained_like('resnet18'), _build_unet('resnet34', 1, 2, 64, -3)
    state = recipe.grow_state(src.state_dict(), big)
    big.load_state_dict(state); big.eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad(): a, b = src(x), big(x)
    assert a.abs().max() > 0.1  # a real output, not zeros
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # the extra blocks (resnet34 has 3/4/6 blocks where resnet18 has 2/2/2) start as the identity, and only they do
    zeroed = sorted(k for k, v in state.items() if k.endswith('bn2.weight') and not v.any())
    assert zeroed == [f'layers.0.{i}.{j}.bn2.weight' for i, n in ((4, 3), (5, 4), (6, 6)) for j in range(2, n)]
    # and they can learn: perturbing one block's zeroed scale changes the output
    state[zeroed[0]] = torch.full_like(state[zeroed[0]], 0.5); big.load_state_dict(state)
    with torch.no_grad(): assert (big(x) - a).abs().max() > 1e-3


def test_grow_refuses_encoders_of_other_widths():
    src, other = _trained_like('resnet18'), _build_unet('resnet50', 1, 2, 64, -3)
    with pytest.raises(ValueError, match='cannot grow'):
        recipe.grow_state(src.state_dict(), other)
