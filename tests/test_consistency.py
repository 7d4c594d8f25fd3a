"Metamorphic checks (hrtem_np.consistency): a simulated micrograph passes, a real file runs, and a real change fails."
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from conftest import VENDOR
from hrtem_np.consistency import (VARIANTS, CHECK_COLUMNS, COUNT_TOL_PCT, MEAN_DIAMETER_TOL_NM, Variant,
                                  compare_particles, consistency_check, _changed)
from hrtem_np.batch import analyze
from hrtem_np.segment import load_model
from hrtem_np.synth import simulate_micrograph

torch.set_num_threads(1)
BY_NAME = {v.name: v for v in VARIANTS}


@pytest.fixture(scope='module')
def unet(): return load_model()


@pytest.fixture(scope='module')
def sim():
    "256² px at 0.05 nm/px, eight ~2 nm Au particles, and its true labels."
    m, labels, _ = simulate_micrograph((256, 256), nm_per_px=0.05, n_particles=8, diameter_nm=2.0, seed=1)
    return m, labels


def test_tolerances_are_the_stated_ones():
    assert (COUNT_TOL_PCT, MEAN_DIAMETER_TOL_NM) == (5.0, 0.05)


def test_rotation_and_flip_give_the_same_particles(sim, unet):
    "With test-time augmentation the network is averaged over the 8 flips/rotations: the same particles, same sizes."
    r = consistency_check(sim[0], model=unet, variants=(BY_NAME['rot90'], BY_NAME['flip']), tta=True)
    assert r.n_original.tolist() == [8, 8]
    assert r.matched_fraction.tolist() == [1.0, 1.0]
    assert (r.mean_diameter_change_nm.abs() <= 0.01).all() and (r.median_abs_diameter_change_nm <= 0.01).all()
    assert r.passed.all()


def test_classical_is_exactly_invariant_to_rotation_and_flip(sim):
    r = consistency_check(sim[0], model='classical', variants=(BY_NAME['rot90'], BY_NAME['flip']))
    assert r.matched_fraction.tolist() == [1.0, 1.0]
    np.testing.assert_allclose(r.median_abs_diameter_change_nm, 0, atol=1e-9)


def test_blur_jpeg_gamma_crop_within_tolerances(sim, unet):
    names = ['blur1px', 'jpeg75', 'gamma0.7', 'gamma1.4', 'crop75']
    r = consistency_check(sim[0], model=unet, variants=tuple(BY_NAME[n] for n in names))
    assert list(r.columns) == list(CHECK_COLUMNS) and r.variant.tolist() == names
    assert r.passed.all(), r.to_string()
    crop = r.set_index('variant').loc['crop75']
    assert crop.n_original >= 1 and crop.matched_fraction == 1.0   # the particles well inside the crop are found again


def test_deleting_a_particle_fails(sim, unet):
    "The matcher really sees a change: the variant's table without one particle fails the count tolerance."
    t = analyze(sim[0], model=unet).particles
    ok = compare_particles(t, t, sim[0].nm_per_px)
    assert ok['passed'] and ok['matched_fraction'] == 1.0
    bad = compare_particles(t, t.drop(index=2), sim[0].nm_per_px)
    assert not bad['passed'] and not bad['count_ok'] and bad['n_variant'] == len(t) - 1
    assert bad['matched_fraction'] == pytest.approx((len(t) - 1)/len(t))
    grown = compare_particles(t, t.assign(diameter_nm=t.diameter_nm + 2*MEAN_DIAMETER_TOL_NM), sim[0].nm_per_px)
    assert grown['count_ok'] and not grown['diameter_ok'] and not grown['passed']


def test_a_change_that_removes_a_particle_fails(sim):
    "End to end: a 'variant' that paints one particle over with the background is caught."
    m, labels = sim
    def erase(mm):
        img = mm.image.copy()
        hole = ndi.binary_dilation(labels == 1, iterations=6)
        img[hole] = np.median(img[labels == 0])
        return _changed(mm, img, 'erase')
    r = consistency_check(m, model='classical', variants=(Variant('erase', erase),)).iloc[0]
    assert r.n_variant == r.n_original - 1 and not r.passed


def test_a_wrong_mapping_back_is_caught(sim):
    "rot90 without its mapping back: the particles no longer match, although their count and sizes do."
    r = consistency_check(sim[0], model='classical', variants=(Variant('rot90_unmapped', BY_NAME['rot90'].apply),)).iloc[0]
    assert r.matched_fraction < 0.5


MULTI_SIGNAL = VENDOR/'rosettasciio'/'digitalmicrograph'/'2D'/'multi_signal.dm3'


def _real(vendor):
    if not MULTI_SIGNAL.exists(): pytest.skip(f"{MULTI_SIGNAL} not in the shared data checkout")
    return MULTI_SIGNAL


def test_real_file(vendor, unet):
    "A real HAADF micrograph (512² px, 0.018 nm/px, calibrated in the file): every check runs and reports."
    r = consistency_check(_real(vendor), model=unet)
    assert r.variant.tolist() == [v.name for v in VARIANTS] and list(r.columns) == list(CHECK_COLUMNS)
    assert (r.n_original >= 0).all() and r.matched_fraction.dropna().between(0, 1).all()
    assert (r.passed == (r.count_ok & r.diameter_ok)).all()


def test_real_file_tta_is_rotation_invariant(vendor, unet):
    t = consistency_check(_real(vendor), model=unet, variants=(BY_NAME['rot90'], BY_NAME['flip']), tta=True)
    assert (t.matched_fraction.fillna(1.0) == 1.0).all()
    assert (t.median_abs_diameter_change_nm.fillna(0) <= 0.01).all(), t.to_string()
