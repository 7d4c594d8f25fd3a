"Parallel dataset generation (spawns processes, so it lives here rather than in nbs/01_synth.ipynb)."
import os
os.environ.setdefault('OMP_NUM_THREADS', '1')
import numpy as np
import pandas as pd
from hrtem_np.io import load_micrograph
from hrtem_np.synth import make_dataset, random_conditions


def small_conditions(rng, shape):
    "Random conditions scaled down so a test image takes well under a second (module level: picklable)."
    return {**random_conditions(rng, shape), 'nm_per_px': 0.05, 'n_particles': 2, 'diameter_nm': 1.5, 'diameter_spread': 0.1}


def test_parallel_dataset_equals_serial(tmp_path):
    kw = dict(seed=11, shape=(96, 96), conditions=small_conditions, progress=False)
    serial = make_dataset(3, tmp_path/'serial', workers=1, **kw)
    parallel = make_dataset(3, tmp_path/'parallel', workers=2, **kw)
    pd.testing.assert_frame_equal(serial, parallel)
    for name in ('images/000002.tif', 'labels/000002.tif'):
        a, b = load_micrograph(tmp_path/'serial'/name), load_micrograph(tmp_path/'parallel'/name)
        np.testing.assert_array_equal(a.image, b.image)
        assert abs(a.nm_per_px - 0.05) < 1e-6
    truth = pd.read_csv(tmp_path/'parallel'/'truth.csv')
    assert list(truth.columns[:3]) == ['image', 'label', 'element']
    assert truth.groupby('image').label.max().tolist() == [int(load_micrograph(tmp_path/'parallel'/f'labels/{i:06d}.tif').image.max()) for i in range(3)]
