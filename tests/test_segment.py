"Segmentation tests that need temporary files, a stand-in torch hub cache or monkeypatching (the rest live in nbs/02_segment.ipynb)."
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from hrtem_np.io import CalibrationError, Micrograph, MicrographError
from hrtem_np import segment as S

torch.set_num_threads(1)


@pytest.fixture(scope='module')
def toys():
    return [S._toy_micrograph((96, 96), seed=s) for s in range(4)]


@pytest.fixture(scope='module')
def trained(toys, tmp_path_factory):
    "A briefly trained light model, saved to a temporary folder."
    seg, learn = S.train_segmenter(toys[:3], toys[3:], crop_px=64, bs=2, cut=-3, epochs=2, crops_per_epoch=12,
                                   lr=3e-3, progress=False, unet_kwargs={'last_cross': False})
    path = tmp_path_factory.mktemp('model') / 'toy_unet'
    S.save_model(seg, path)
    return seg, learn, path


def _standin_hub(tmp_path, monkeypatch):
    "A torch hub cache holding a STAND-IN for torchvision's resnet18 ImageNet file: random weights, real file name."
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    torch.manual_seed(123)
    standin = torchvision.models.resnet18(weights=None).state_dict()
    ckpt = tmp_path / 'hub' / 'checkpoints' / 'resnet18-f37072fd.pth'
    ckpt.parent.mkdir(parents=True)
    torch.save(standin, ckpt)
    return standin, ckpt


def test_imagenet_start_loads_hub_cache_file(toys, tmp_path, monkeypatch):
    standin, ckpt = _standin_hub(tmp_path, monkeypatch)
    monkeypatch.setattr(torch.hub, 'download_url_to_file', lambda *a, **k: pytest.fail('must not download'))
    assert S._imagenet_checkpoint('resnet18') == ckpt
    learn = S.segmenter_learner(toys[:2], toys[2:3], pretrained='imagenet', crop_px=64, bs=2, cut=-3)
    enc = learn.model[0]  # fastai's encoder: conv1, bn1, relu, maxpool, layer1, layer2, layer3 (cut=-3)
    # n_in=1: fastai sums the RGB filters of the first convolution
    torch.testing.assert_close(enc[0].weight, standin['conv1.weight'].sum(1, keepdim=True))
    torch.testing.assert_close(enc[4][0].conv1.weight, standin['layer1.0.conv1.weight'])
    torch.testing.assert_close(enc[6][1].conv2.weight, standin['layer3.1.conv2.weight'])
    assert learn.segmenter_card['training']['pretrained'] == 'imagenet'


def test_imagenet_offline_without_file_is_a_clear_error(toys, tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    def offline(*a, **k): raise urllib.error.URLError('Name or service not known')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', offline)
    with pytest.raises(FileNotFoundError) as e:
        S.segmenter_learner(toys[:2], toys[2:3], pretrained='imagenet', crop_px=64, bs=2)
    msg = str(e.value)
    assert 'resnet18-f37072fd.pth' in msg and str(tmp_path / 'hub' / 'checkpoints') in msg
    assert 'pretrained=None' in msg
    assert not (tmp_path / 'hub' / 'checkpoints' / 'resnet18-f37072fd.pth').exists()


def test_save_load_identical_and_card(trained, toys):
    seg, learn, path = trained
    seg2 = S.load_model(str(path) + '.safetensors')
    img = toys[3][0]
    np.testing.assert_array_equal(seg2.predict_proba(img.image), seg.predict_proba(img.image))
    m1, p1 = S.segment(img, seg, tile_px=64, overlap_px=16, return_proba=True)
    m2, p2 = S.segment(img, seg2, tile_px=64, overlap_px=16, return_proba=True)
    np.testing.assert_array_equal(p1, p2)
    card = seg2.card
    for key in ('arch', 'classes', 'working_nm_per_px', 'normalisation', 'training', 'metrics', 'versions', 'weights_sha256'):
        assert key in card, key
    assert card['cut'] == -3 and card['n_in'] == 1 and card['working_nm_per_px'] == 0.07
    assert card['unet_kwargs'] == {'last_cross': False}
    assert 0 <= card['metrics']['dice'] <= 1 and card['training']['n_train_images'] == 3
    # a Learner from train_segmenter saves the same way
    w, c = S.save_model(learn, path.parent / 'from_learner')
    np.testing.assert_array_equal(S.load_model(w).predict_proba(img.image), seg.predict_proba(img.image))


def test_state_dict_pth_loads_weights_only(trained, toys, tmp_path):
    seg, _, path = trained
    import json
    torch.save(seg.model.state_dict(), tmp_path / 'm.pth')
    from hrtem_np.io import file_sha256
    card = dict(seg.card, weights_file='m.pth', weights_sha256=file_sha256(tmp_path / 'm.pth'))
    (tmp_path / 'm.json').write_text(json.dumps(card))
    np.testing.assert_array_equal(S.load_model(tmp_path / 'm.pth').predict_proba(toys[0][0].image),
                                  seg.predict_proba(toys[0][0].image))


def test_trained_model_learns_particles(trained, toys):
    seg, _, _ = trained
    m, truth = toys[3]
    assert S._dice(S.segment(m, seg, tile_px=64, overlap_px=16), truth) > 0.7


def test_tiled_matches_whole_image_for_trained_model(trained):
    seg, _, _ = trained
    m, _ = S._toy_micrograph((256, 256), n_particles=12, seed=7)
    whole = seg.predict_proba(m.image) > 0.5
    tiled = S.segment(m, seg, tile_px=128, overlap_px=32)
    inner = np.s_[16:112, 16:112]  # inside the first tile, away from its seams
    assert (whole[inner] == tiled[inner]).mean() > 0.97


def test_start_from_saved_model(trained, toys):
    seg, _, path = trained
    learn = S.segmenter_learner(toys[:2], toys[2:3], pretrained=path, crop_px=64, bs=2)
    assert learn.segmenter_card['cut'] == -3  # architecture taken from the start model
    for k, v in seg.model.state_dict().items():
        torch.testing.assert_close(learn.model.state_dict()[k], v)
    seg2, learn2 = S.train_segmenter(toys[:2], toys[2:3], pretrained=path, crop_px=64, bs=2, epochs=1,
                                     freeze_epochs=1, crops_per_epoch=4, progress=False)
    assert all(p.requires_grad for p in learn2.model.parameters())  # fine_tune: frozen epoch, then unfrozen
    assert not all(torch.equal(learn2.model.state_dict()[k], v) for k, v in seg.model.state_dict().items())
    assert seg2.card['training']['freeze_epochs'] == 1


def test_shipped_model_missing_is_clear(monkeypatch, tmp_path):
    monkeypatch.setattr(S, '_SHIPPED', tmp_path / 'models' / 'hrtem_unet')
    with pytest.raises(FileNotFoundError, match='shipped model is missing'):
        S.load_model()
    with pytest.raises(FileNotFoundError, match='shipped model is missing'):
        S.segmenter_learner([S._toy_micrograph((64, 64))], pretrained='hrtem', crop_px=64)


def test_bad_micrographs_refused_before_any_work(toys):
    img = toys[0][0].image
    nowhere = '/nonexistent/model'  # loading it would fail: the check must come first
    with pytest.raises(CalibrationError, match='not square'):
        S.segment(Micrograph(img, 0.05, metadata={'nm_per_px_x': 0.05, 'nm_per_px_y': 0.07}), nowhere)
    with pytest.raises(CalibrationError, match='nm_per_px'):
        S.segment(img, nowhere)
    with pytest.raises(CalibrationError):
        S.segment(Micrograph(img, 0.0), nowhere)
    for bad, why in [(np.ones((1, 1), np.float32), 'too small'), (np.full((32, 32), 3.0, np.float32), 'constant'),
                     (np.where(np.eye(32, dtype=bool), np.nan, 1.0).astype(np.float32), 'NaN')]:
        with pytest.raises(MicrographError, match=why):
            S.segment(Micrograph(bad, 0.05), nowhere)


def test_label_size_mismatch_names_the_file(toys):
    m, mask = toys[0]
    m = Micrograph(m.image, m.nm_per_px, source='grid3_0042.dm4')
    with pytest.raises(ValueError, match=r'grid3_0042\.dm4.*\(96, 90\)'):
        S.train_segmenter([(m, mask[:, :90])], crop_px=64)


def test_train_from_a_labelled_folder(toys, tmp_path):
    from PIL import Image
    from hrtem_np.io import save_micrograph
    for i, (m, mask) in enumerate(toys[:3]):
        save_micrograph(m, tmp_path / f'img{i}.tif')
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / f'img{i}_mask.png')
    learn = S.segmenter_learner(tmp_path, crop_px=64, bs=2, cut=-3, valid_pct=0.34)
    t = learn.segmenter_card['training']
    assert (t['n_train_images'], t['n_valid_images']) == (2, 1)
    assert all(s.endswith('.tif') for s in t['sources'])
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / 'img1_mask.png')
    with pytest.raises(MicrographError, match=r'img1_mask\.png: mask is 50×50 px but img1\.tif is 96×96 px'):
        S.segmenter_learner(tmp_path, crop_px=64)


def test_tile_progress_for_large_micrographs(capsys):
    "A micrograph needing several batches of tiles shows them go by (issue 23); a small one, or progress=False, shows nothing."
    img = np.random.default_rng(0).normal(1, 0.1, (240, 240)).astype(np.float32)
    m = Micrograph(img, 0.07, 'big.tif')
    seg = S.load_model()
    a = S.segment(m, seg, tile_px=64, overlap_px=8, batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert 'big.tif: tiles' in err and '100%' in err
    b = S.segment(m, seg, tile_px=64, overlap_px=8, batch_size=2, progress=False)
    assert capsys.readouterr().err == '' and np.array_equal(a, b)
    S.segment(m, seg, progress=True)  # one batch of tiles: no bar
    assert 'tiles' not in capsys.readouterr().err


def test_model_provenance_names_the_weights_used(tmp_path):
    "check_hash=False records the hash of the weights actually loaded; a truncated card names its file (issue 24)."
    import json, shutil, warnings
    from hrtem_np.batch import _resolve_model
    from hrtem_np.io import file_sha256
    d = tmp_path/'m'; d.mkdir()
    for f in ('hrtem_unet.safetensors', 'hrtem_unet.json'): shutil.copy(Path(S.__file__).parent/'models'/f, d/f)
    card = json.loads((d/'hrtem_unet.json').read_text()); card['weights_sha256'] = '0'*64
    (d/'hrtem_unet.json').write_text(json.dumps(card))
    with pytest.raises(ValueError, match='does not match'): S.load_model(d/'hrtem_unet.safetensors')
    seg = S.load_model(d/'hrtem_unet.safetensors', check_hash=False)
    real = file_sha256(d/'hrtem_unet.safetensors')
    assert seg.card['weights_sha256'] == real and seg.card['weights_sha256_in_card'] == '0'*64
    assert _resolve_model(seg)[1]['sha256'] == real
    del card['weights_sha256']; (d/'hrtem_unet.json').write_text(json.dumps(card))
    with pytest.raises(ValueError, match='states no weights_sha256.*check_hash=False'): S.load_model(d/'hrtem_unet.safetensors')
    with pytest.warns(UserWarning, match='cannot be verified'): seg = S.load_model(d/'hrtem_unet.safetensors', check_hash=False)
    assert seg.card['hash_checked'] is False and seg.card['weights_sha256'] == real   # provenance says it was not checked
    (d/'hrtem_unet.json').write_text(json.dumps(card)[:100])
    with pytest.raises(ValueError, match='hrtem_unet.json: the model card is not valid JSON'): S.load_model(d/'hrtem_unet.safetensors')
