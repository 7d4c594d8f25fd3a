"""The error decomposition in `benchmarks/iou_diagnostics.py`, on masks with known answers."""
import importlib.util
from pathlib import Path

import numpy as np
from skimage.draw import disk

spec = importlib.util.spec_from_file_location('iou_diagnostics', Path(__file__).resolve().parents[1]/'benchmarks'/'iou_diagnostics.py')
diag = importlib.util.module_from_spec(spec); spec.loader.exec_module(diag)


def _scene():
    "Truth: particles 1 (r 10) and 2 (r 8). Prediction: 1 drawn 2 px too wide, 2 missed, a false particle (r 6)."
    labels, proba = np.zeros((96, 96), np.int32), np.zeros((96, 96), np.float32)
    labels[disk((24, 24), 10)] = 1; labels[disk((70, 70), 8)] = 2
    proba[disk((24, 24), 12)] = 0.9; proba[disk((24, 72), 6)] = 0.9
    return proba, labels


def test_boundary_only_iou_keeps_only_the_matched_boundary_error():
    proba, labels = _scene()
    b = diag.boundary_only_iou(proba, labels, nm_per_px=0.05)
    # fixing the miss and the false particle leaves particle 1's 2 px overshoot on top of both true particles
    t = labels > 0; over = np.zeros_like(t); over[disk((24, 24), 12)] = True
    expected = t.sum() / (t | over).sum()
    assert abs(b - expected) < 1e-9
    assert 0.7 < b < 0.95  # and it is neither perfect nor the raw IoU, which is far lower:
    raw = ((proba > 0.5) & t).sum() / ((proba > 0.5) | t).sum()
    assert raw < b - 0.2


def test_centroid_offsets_measure_a_known_shift():
    labels = np.zeros((96, 96), np.int32); labels[disk((40, 40), 10)] = 1
    proba = np.zeros((96, 96), np.float32); proba[disk((42, 39), 10)] = 0.9
    (d,) = diag.centroid_offsets(proba, labels, nm_per_px=0.05)
    np.testing.assert_allclose(d, [2, -1], atol=1e-9)


def test_scores_of_a_perfect_prediction():
    _, labels = _scene()
    iou, f1, dd = diag.scores([(labels > 0).astype(np.float32)], [(type('M', (), {'nm_per_px': 0.05})(), labels)])
    assert iou == 1 and f1 == 1 and dd == 0
