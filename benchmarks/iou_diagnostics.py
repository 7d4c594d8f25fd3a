"""Where does the shipped model's pixel IoU go? Cheap checks on a folder of simulated micrographs, no training.

    python benchmarks/iou_diagnostics.py [--data work_data/v2/valid] [--model PATH] [--scales 0.06,0.07,0.08]

`--data` is a folder of npz micrographs with `image`, `labels`, `nm_per_px` (the training script's validation set,
`tools/train_shipped_model.py simulate --data work_data/v2 --n 0 --n-valid 48`, or the held-out cache that
`benchmarks/accuracy.py` writes, `work_data/heldout`). Every score uses the benchmark's own scoring: instances from
`particles_from_mask` (edge particles kept for the split), `evaluate_segmentation`, pixel IoU as the mean over images.
Prints, for the model as `segment` runs it by default:
1. pixel IoU, F1 and median |Δd| at probability thresholds 0.3–0.7 (is 0.5 the right cut?);
2. the mean offset of matched particles' centroids, predicted minus true, in px (are labels and images registered?);
3. the IoU if every missed and every false particle were fixed, leaving only boundary errors of matched particles;
4. the IoU when the network runs at other working pixel sizes, and with their probabilities averaged.
Choose models on the validation set; the held-out set is for the final figure only.
"""
import argparse, glob
import numpy as np, torch
from scipy import ndimage as ndi

from hrtem_np.io import Micrograph
from hrtem_np.segment import load_model, segment, Segmenter
from hrtem_np.particles import particles_from_mask
from hrtem_np.evaluate import evaluate_segmentation, summarize_evaluation, match_particles

def _instances(mask, nm_per_px): return particles_from_mask(mask, nm_per_px, element=None, edge='keep')[0]

def scores(probas, items, threshold=0.5):
    "Overall pixel IoU, F1 and median |Δd| (nm) of thresholded probabilities, scored as benchmarks/accuracy.py does."
    ev = evaluate_segmentation([dict(pred_labels=_instances(p > threshold, m.nm_per_px), true_labels=l, nm_per_px=m.nm_per_px)
                                for p, (m, l) in zip(probas, items)])
    r = summarize_evaluation(ev).loc['all']
    return r.pixel_iou, r.f1, r.median_abs_diameter_error_nm

def boundary_only_iou(proba, labels, nm_per_px):
    "Image IoU if misses and false particles were fixed: only matched particles' boundary errors remain."
    pm = proba > 0.5; pl = _instances(pm, nm_per_px); t = labels > 0
    mt = match_particles(pl, labels)
    missed = np.isin(labels, np.setdiff1d(np.unique(labels[t]), mt.true_label))
    false = (np.isin(pl, np.setdiff1d(np.unique(pl[pl > 0]), mt.pred_label)) | (pm & (pl == 0))) & ~t
    fixed = (pm & ~false) | missed
    return (fixed & t).sum() / max(1, (fixed | t).sum())

def centroid_offsets(proba, labels, nm_per_px):
    "Predicted minus true centroid (rows, cols) in px, one row per matched particle."
    pl = _instances(proba > 0.5, nm_per_px)
    return [np.subtract(ndi.center_of_mass(pl == r.pred_label), ndi.center_of_mass(labels == r.true_label))
            for r in match_particles(pl, labels).itertuples()]

def main(data, model_path, scales, threads):
    torch.set_num_threads(threads)
    files = sorted(glob.glob(f'{data}/*.npz'))
    if not files: raise SystemExit(f"no npz micrographs in {data}: make them first (see this script's docstring)")
    items = [(Micrograph(z['image'], float(z['nm_per_px']), f, 'metadata'), z['labels']) for f in files for z in [np.load(f)]]
    base = load_model(model_path)
    at = lambda w: Segmenter(base.model, {**base.card, 'working_nm_per_px': w})
    w0 = base.working_nm_per_px
    probas = {w0: [segment(m, model=base, return_proba=True)[1] for m, _ in items]}
    print(f"{len(items)} micrographs in {data}; model {model_path or 'shipped'} at {w0} nm/px\n")
    print("1. threshold   pixel IoU   F1     median |Δd| (nm)")
    for t in (0.3, 0.4, 0.5, 0.6, 0.7): print(f"   {t:.1f}         " + "  ".join(f'{s:.4f}' for s in scores(probas[w0], items, t)))
    d = np.array([o for p, (m, l) in zip(probas[w0], items) for o in centroid_offsets(p, l, m.nm_per_px)])
    print(f"\n2. centroid offset of {len(d)} matched particles, px: rows {d[:, 0].mean():+.3f} ± {d[:, 0].std()/np.sqrt(len(d)):.3f}, "
          f"cols {d[:, 1].mean():+.3f} ± {d[:, 1].std()/np.sqrt(len(d)):.3f} (mean ± s.e.)")
    b = np.mean([boundary_only_iou(p, l, m.nm_per_px) for p, (m, l) in zip(probas[w0], items)])
    print(f"\n3. pixel IoU {scores(probas[w0], items)[0]:.4f}; with misses and false particles fixed {b:.4f}")
    print("\n4. working nm/px   pixel IoU   F1     median |Δd| (nm)")
    for w in scales:
        if w not in probas: probas[w] = [segment(m, model=at(w), return_proba=True)[1] for m, _ in items]
        print(f"   {w:<15}  {'  '.join(f'{s:.4f}' for s in scores(probas[w], items))}")
    avg = [sum(probas[w][i] for w in scales) / len(scales) for i in range(len(items))]
    print(f"   average of all   {'  '.join(f'{s:.4f}' for s in scores(avg, items))}")

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default='work_data/v2/valid'); ap.add_argument('--model', default=None)
    ap.add_argument('--scales', default='0.06,0.07,0.08'); ap.add_argument('--threads', type=int, default=2)
    a = ap.parse_args()
    main(a.data, a.model, [float(s) for s in a.scales.split(',')], a.threads)
