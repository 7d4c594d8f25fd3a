"""Learning curve of `fine_tune` (issue 25): how many labelled images a lab needs, and how long it takes on this CPU.

Each row fine-tunes the shipped model with the ONE recipe (`hrtem_np.fine_tune.FINE_TUNE_RECIPE`) on the first n
labelled images of a fixed order and scores it on images it never saw, beside the shipped model (n = 0):

- **real**: `../shared/data/real/seg_track` (real bright-field TEM, expert masks, CC-BY-4.0, DOI 10.69761/HDTA8338):
  fine-tuned on n of the even-numbered images, scored on the 10 odd-numbered ones at an assumed 0.05 nm/px (the real
  pixel size was not recorded): pixel IoU (mean over images), object F1, ECD offset in px (predicted − expert).
- **dense**: simulated fields the shipped model handles poorly (26 small particles of 1.6 nm, half of them touching,
  low dose 60 e/Å², 12 nm carbon; shipped model object F1 ≈ 0.86), scored on 6 others: pixel IoU, object F1, mean-diameter bias in nm against the truth.
- **tight**: the same fields labelled by a different convention (every truth outline eroded by one pixel), scored
  against that convention: does the fine-tuned model adopt the lab's habit (|bias| → 0)?

    OMP_NUM_THREADS=1 python benchmarks/learning_curve.py [--sets real,dense,tight] [--n 1,3,10] [--out FILE.csv]
    python benchmarks/learning_curve.py --save-real work_data/lc/real3   # then: benchmarks/robustness.py --model work_data/lc/real3.safetensors

CPU seconds are the wall time of the `fine_tune` call on this machine (2 cores; torch on one thread).
"""
import argparse, sys, time, warnings
from pathlib import Path

import numpy as np, pandas as pd
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/'benchmarks'))
from hrtem_np.fine_tune import FINE_TUNE_RECIPE, fine_tune  # noqa: E402
from hrtem_np.segment import load_model, segment  # noqa: E402
from hrtem_np.synth import simulate_micrograph  # noqa: E402
from hrtem_np.evaluate import object_scores  # noqa: E402
from hrtem_np.particles import split_particles  # noqa: E402
from real_agreement import SEG_TRACK, image_ids, load_pair, score_image  # noqa: E402

REAL_NM_PER_PX = 0.05


def real_sets(folder=SEG_TRACK):
    "(training pairs in a fixed order, held-out pairs) of the real seg_track images: even ids train, odd ids score."
    ids = image_ids(folder)
    order = [i for i in ids if i % 2 == 0]
    order = list(np.random.default_rng(0).permutation(order))
    return [load_pair(i, REAL_NM_PER_PX, folder) for i in order], [load_pair(i, REAL_NM_PER_PX, folder) for i in ids if i % 2]


def dense_field(seed:int, tight:bool=False):
    "(Micrograph, truth mask) of a dense, low-dose field on thick carbon; `tight` erodes every outline by one pixel."
    m, lab, _ = simulate_micrograph((384, 384), 0.05, n_particles=26, touching_fraction=0.5, dose_e_per_A2=60,
                                    carbon_thickness_nm=12.0, diameter_nm=1.6, seed=1000 + seed)
    if tight: lab = np.where(ndi.grey_erosion(lab, size=3) == lab, lab, 0)   # each particle shrinks by 1 px, touching ones part
    return m, lab


def score_sim(seg, pairs)->dict:
    "Pixel IoU (mean), object F1 (pooled) and mean-diameter bias (nm, matched particles, predicted − label)."
    ious, tp, fp, fn, dd = [], 0, 0, 0, []
    for m, lab in pairs:
        pred = segment(m, seg)
        truth = lab > 0
        ious.append(np.count_nonzero(pred & truth)/max(1, np.count_nonzero(pred | truth)))
        o = object_scores(split_particles(pred, m.nm_per_px).labels, lab, m.nm_per_px)   # touching particles split, as analyze does
        tp, fp, fn = tp + o['tp'], fp + o['fp'], fn + o['fn']
        dd += o['diameter_errors_nm']
    return dict(pixel_iou=float(np.mean(ious)), object_f1=2*tp/max(1, 2*tp + fp + fn),
                diameter_bias_nm=float(np.mean(dd)) if dd else float('nan'))


def score_real(seg, pairs)->dict:
    rows = [score_image(segment(m, seg), true, m.nm_per_px) for m, true in pairs]
    d = pd.DataFrame(rows)
    w = d.tp.where(d.diameter_offset_px.notna(), 0)
    return dict(pixel_iou=d.pixel_iou.mean(), object_f1=2*d.tp.sum()/max(1, 2*d.tp.sum() + d.fp.sum() + d.fn.sum()),
                diameter_offset_px=(d.diameter_offset_px.fillna(0)*w).sum()/max(1, w.sum()))


def main(a):
    import torch
    torch.set_num_threads(a.threads)
    shipped, rows = load_model(), []
    ns = [int(n) for n in a.n.split(',')]
    for name in a.sets.split(','):
        if name == 'real':
            if not SEG_TRACK.exists(): print(f"(no {SEG_TRACK}: real set skipped)"); continue
            train, held = real_sets()
            scorer = score_real
        else:
            tight = name == 'tight'
            train = [dense_field(s, tight) for s in range(max(ns))]
            held = [dense_field(100 + s, tight) for s in range(6)]
            train = [(m, lab > 0) for m, lab in train]
            scorer = score_sim
        rows.append(dict(set=name, n_train=0, seconds=0.0, **scorer(shipped, held)))
        print(rows[-1], flush=True)
        for n in ns:
            if n > len(train): continue
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                t0 = time.perf_counter()
                ft = fine_tune(train[:n], holdout=0, seed=0)
                sec = time.perf_counter() - t0
            rows.append(dict(set=name, n_train=n, seconds=round(sec, 1), **scorer(ft.segmenter, held)))
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print(f"\nlearning curve, recipe {FINE_TUNE_RECIPE}, {time.strftime('%Y-%m-%d')}, torch threads {a.threads}\n")
    print(df.round(3).to_markdown(index=False) if a.markdown else df.round(3).to_string(index=False))
    if a.out: df.to_csv(a.out, index=False)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sets', default='real,dense,tight')
    ap.add_argument('--n', default='1,3,10')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default=None)
    ap.add_argument('--markdown', action='store_true')
    ap.add_argument('--save-real', default=None, metavar='MODEL',
                    help='only fine-tune on the first 3 real images and save the model here (then score it on the robustness bench '
                         'with benchmarks/robustness.py --model MODEL, to see what it forgot)')
    a = ap.parse_args()
    if a.save_real:
        import torch; torch.set_num_threads(a.threads)
        ft = fine_tune(real_sets()[0][:3], out=a.save_real, holdout=0, overwrite=True)
        print(ft)
    else: main(a)
