"""Cross-check `hrtem_np.particles` against the exact truth of simulated micrographs (`hrtem_np.synth`).

The simulator rasterises each particle's exact convex outline (pixel centres inside it) and reports its area,
equivalent diameter and Feret diameters on that polygon. Measured back from the truth labels:
- diameter within one pixel, centroid within half a pixel;
- Feret diameters 0.5 px below to 1.5 px above the polygon's: ours are calipers on the pixel outline, whose
  staircase corners stick out by up to ½√2 px on each side.
Touching particles merged into one mask are split again by `particles_from_mask`, each within a pixel of its truth.
"""
import numpy as np
import pytest
from scipy import ndimage as ndi
from hrtem_np.synth import simulate_micrograph
from hrtem_np.particles import measure_particles, particles_from_mask, PARTICLE_COLUMNS

NM_PER_PX = 0.05

def simulate(seed, **kw):
    "A small simulated micrograph (no carbon film: only the labels and truth matter here)."
    kw = dict(shape=(192, 192), nm_per_px=NM_PER_PX, n_particles=6, diameter_nm=2.0, carbon_thickness_nm=0,
              seed=seed) | kw
    return simulate_micrograph(**kw)

def best_match(truth_labels, labels):
    "For each truth label 1…n, the measured label covering most of it (0 when none)."
    n, m = int(truth_labels.max()), int(labels.max())
    both = np.bincount(truth_labels.ravel().astype(np.int64)*(m + 1) + labels.ravel(), minlength=(n + 1)*(m + 1))
    overlap = both.reshape(n + 1, m + 1)[1:, 1:]
    return np.where(overlap.max(1) > 0, overlap.argmax(1) + 1, 0)

@pytest.mark.parametrize('seed', [1, 7])
def test_truth_labels_measure_back(seed):
    m, labels, truth = simulate(seed, touching_fraction=0.3, allow_edge=True)
    ours = measure_particles(labels, m.nm_per_px, image=m, element='Au')
    assert list(ours.columns) == list(PARTICLE_COLUMNS)
    both = truth.merge(ours, on='label', suffixes=('_true', ''))
    clean = both[~both.touching & ~both.overlapping & ~both.touches_edge_true]
    assert len(clean) >= 3, "the scene should hold a few isolated particles"
    px = lambda col: (clean[col] - clean[col + '_true'])/NM_PER_PX
    assert px('diameter_nm').abs().max() <= 1.0
    assert px('x_nm').abs().max() <= 0.5 and px('y_nm').abs().max() <= 0.5
    assert px('feret_max_nm').between(-0.5, 1.5).all() and px('feret_min_nm').between(-0.5, 1.5).all()
    assert (both.touches_edge == both.touches_edge_true).all()
    # visible outlines are faceted (hull of the atom columns + 0.02 nm), so a pixelated one reads 0.8–1 round
    assert (clean.circularity.between(0.80, 1.05)).all() and (clean.convexity > 0.97).all()

@pytest.mark.parametrize('seed', [0, 2, 4, 5])
def test_touching_particles_are_split_back(seed):
    m, labels, truth = simulate(seed, touching_fraction=0.6, dose_e_per_A2=1e5)
    assert truth.touching.sum() >= 2, "the scene should hold touching particles"
    split_labels, parts = particles_from_mask(labels > 0, m.nm_per_px, edge='keep')
    assert len(parts) == len(truth)
    match = best_match(labels, split_labels)
    assert len(set(match)) == len(truth) and 0 not in match          # one measured particle per true one
    d = parts.set_index('label').loc[match, 'diameter_nm'].to_numpy()
    assert np.abs(d - truth.diameter_nm.to_numpy()).max() <= NM_PER_PX      # within one pixel
    comp, _ = ndi.label(labels > 0, np.ones((3, 3)))                      # particles merged in the mask …
    comp_of = np.array([np.bincount(comp[labels == k]).argmax() for k in truth.label])
    merged = np.bincount(comp_of)[comp_of] > 1
    assert merged.any()
    was_split = parts.set_index('label').loc[match, 'was_split'].to_numpy()
    assert (was_split == merged).all()                                    # … and only those were split


def test_touching_split_rate():
    "Over 20 scenes, touching particles are split in at least 18: facet-to-facet contacts (a wide neck) can stay merged."
    whole = 0
    for seed in range(20):
        m, labels, truth = simulate(seed, touching_fraction=0.6, dose_e_per_A2=1e5)
        _, parts = particles_from_mask(labels > 0, m.nm_per_px, edge='keep')
        assert len(parts) <= len(truth)                                   # never split a particle into two
        whole += len(parts) == len(truth)
    assert whole >= 18, f"only {whole} of 20 scenes split back completely"
