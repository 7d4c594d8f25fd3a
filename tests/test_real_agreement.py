"""Outline offsets (`boundary_offset_px`, `diameter_offset_px`) on known masks, and `benchmarks/real_agreement.py` on
two real seg_track images with their expert masks (skipped when ../shared/data/real/seg_track is absent)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from hrtem_np.evaluate import boundary_offset_px, diameter_offset_px, pixel_scores

REPO = Path(__file__).resolve().parents[1]
SEG_TRACK = REPO.parent/'shared'/'data'/'real'/'seg_track'

spec = importlib.util.spec_from_file_location('real_agreement', REPO/'benchmarks'/'real_agreement.py')
bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)


def _disk(r, shape=(128, 128), centre=(64, 61.7)):
    m = np.zeros(shape, bool); m[disk(centre, r, shape=shape)] = True
    return m


def _grow(mask, k):
    "Mask grown (k > 0) or shrunk (k < 0) by k px with a round structuring element."
    return ndi.distance_transform_edt(~mask) <= k if k >= 0 else ndi.distance_transform_edt(mask) > -k


@pytest.mark.parametrize('r', [12, 15, 30])  # from r = 12 the disks r - 3 and r still overlap with IoU ≥ 0.5
@pytest.mark.parametrize('k', [-3, -2, 2, 3])
def test_disk_offsets_known_answer(r, k):
    t, p = _disk(r), _disk(r + k)
    assert abs(boundary_offset_px(p, t) - k) < 0.3
    assert abs(diameter_offset_px(p, t) - 2*k) < 0.3  # equivalent diameter of a disk grows by 2k
    assert boundary_offset_px(t, t) == 0 and diameter_offset_px(t, t) == 0


def test_offset_is_antisymmetric_and_ignores_far_false_particles():
    t, p = _disk(20), _disk(23)
    assert abs(boundary_offset_px(p, t) + boundary_offset_px(t, p)) < 1e-9
    far = p.copy(); far[disk((10, 10), 5)] = True  # a false particle far from any true outline
    assert abs(boundary_offset_px(far, t, max_px=10) - 3) < 0.3
    assert boundary_offset_px(far, t) > 5  # unless kept in
    # the false particle does not change the diameter offset either: it matches nothing
    assert abs(diameter_offset_px(far, t) - 6) < 0.3


def test_empty_masks_give_nan():
    z = np.zeros((32, 32), bool)
    assert np.isnan(boundary_offset_px(z, _disk(5, (32, 32), (16, 16))))
    assert np.isnan(diameter_offset_px(z, _disk(5, (32, 32), (16, 16))))


def test_edge_profile_and_crossing_on_a_blurred_step():
    m = _disk(40)  # a dark "particle" whose intensity edge is blurred by σ = 3 px
    bins = np.arange(-12, 16)
    prof = bench.edge_profile(ndi.gaussian_filter(np.where(m, 0.0, 1.0), 3), m, bins)
    assert abs(bench.crossing_px(prof, bins) - 0) < 0.35  # half-way exactly at the outline
    wider = bench.edge_profile(ndi.gaussian_filter(np.where(_disk(44), 0.0, 1.0), 3), m, bins)
    assert abs(bench.crossing_px(wider, bins) - 4) < 0.35  # an intensity edge 4 px outside the outline


@pytest.fixture(scope='module')
def seg_track():
    if not (SEG_TRACK/'labels'/'label_0.png').exists():
        pytest.skip(f"seg_track images not found at {SEG_TRACK} (../shared/data/real/seg_track beside the repo); "
                    "these tests need the shared data checkout")
    return SEG_TRACK


def test_expert_masks_against_themselves_and_grown(seg_track):
    for i in (0, 7):
        m, expert = bench.load_pair(i, 0.05, seg_track)
        assert m.image.shape == expert.shape == (512, 512) and m.nm_per_px == 0.05 and m.image.ndim == 2
        assert 0.05 < expert.mean() < 0.5  # particles cover a part of the field
        assert pixel_scores(expert, expert)['iou'] == 1.0
        assert boundary_offset_px(expert, expert) == 0 and diameter_offset_px(expert, expert) == 0
        for k in (2, 4):
            assert abs(boundary_offset_px(_grow(expert, k), expert, max_px=20) - k) < 0.3
            assert abs(boundary_offset_px(_grow(expert, -k), expert, max_px=20) + k) < 0.3


def test_benchmark_scores_two_images(seg_track):
    per = bench.score(images=[0, 7], scales=[0.04], thresholds=(0.5, 0.95), folder=seg_track)
    assert list(per.columns) == bench.COLUMNS
    assert sorted(per.method.unique()) == ['classical', 'model p>0.5', 'model p>0.95'] and len(per) == 6
    assert per.pixel_iou.between(0, 1).all() and (per[['tp', 'fp', 'fn']] >= 0).all().all()
    assert per.boundary_offset_px.between(-20, 20).all() and per.diameter_offset_px.abs().lt(40).all()
    p5, p95 = (per[per.method == k].set_index('image') for k in ('model p>0.5', 'model p>0.95'))
    assert (p95.boundary_offset_px < p5.boundary_offset_px).all()  # a higher threshold draws tighter outlines
    sm = bench.summarize(per)
    assert list(sm.columns) == ['n_images', 'pixel_iou', 'object_f1', 'boundary_offset_px', 'diameter_offset_px']
    assert (sm.n_images == 2).all() and sm.object_f1.between(0, 1).all()
    assert sm.loc[('classical', 0.04), 'pixel_iou'] > 0.9  # the expert outlines follow a blurred threshold closely


def test_shipped_model_agrees_with_experts_on_held_out_images(seg_track):
    """The shipped model trained on the even-numbered seg_track images; on odd ones it never saw, its outlines agree
    with the expert's (version 1: pixel IoU 0.72, outlines 6 px outside, ECD +12 px)."""
    from hrtem_np.segment import load_model
    assert '0,2,4,6,8,10,12,14,16,18' in (load_model().card['training'].get('real_images') or '')
    per = bench.score(images=[1, 9], scales=[0.06, 0.08], classical=False, folder=seg_track)
    assert per.pixel_iou.mean() >= 0.85 and (per.pixel_iou >= 0.8).all(), per.to_string()
    assert per.boundary_offset_px.abs().lt(1.5).all() and per.diameter_offset_px.abs().lt(4.0).all(), per.to_string()
