"""Is a particle of low confidence real? The confidence rule (`AnalysisOptions.min_confidence`) checked on REAL images.

The robustness bench (simulated) says particles of confidence 0.7–0.8 are mostly false (issue 21), which argues for
raising `min_confidence` to 0.8; this script asks the same of the real seg_track images with expert masks
(`../shared/data/real/seg_track`, CC-BY-4.0, DOI 10.69761/HDTA8338) before any default changes: every particle the
shipped model finds (`analyze(..., min_confidence=0, edge='keep')`, assumed 0.05 nm/px) is called real when at least
half of its pixels lie in the expert mask. Prints, per confidence bin, the particles found and the share that is real.

    OMP_NUM_THREADS=2 python benchmarks/confidence_real.py [--nm-per-px 0.05] [--images odd|all]
"""
import argparse, sys, warnings
from pathlib import Path

import numpy as np, pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/'benchmarks'))
from hrtem_np.batch import analyze  # noqa: E402
from real_agreement import SEG_TRACK, image_ids, load_pair  # noqa: E402

BINS = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def main(a):
    if not SEG_TRACK.exists(): sys.exit(f"{SEG_TRACK} not found: needs ../shared/data beside the repo")
    ids = [i for i in image_ids() if a.images == 'all' or i % 2]
    rows = []
    for i in ids:
        m, expert = load_pair(i, a.nm_per_px)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            an = analyze(m, min_confidence=0.0, edge='keep', progress=False)
        for r in an.particles.itertuples():
            own = an.labels == r.label
            rows.append(dict(image=i, label=r.label, confidence=r.confidence, diameter_nm=r.diameter_nm,
                             real=bool(expert[own].mean() >= 0.5)))
    t = pd.DataFrame(rows)
    t['bin'] = pd.cut(t.confidence, BINS, right=False)
    out = t.groupby('bin', observed=False).agg(particles=('real', 'size'), real=('real', 'sum'))
    out['share_real'] = (out.real/out.particles.replace(0, np.nan)).round(3)
    print(f"shipped model on {len(ids)} real seg_track images at an assumed {a.nm_per_px} nm/px; "
          f"particles found at any confidence: {len(t)}\n")
    print(out.to_string())
    lost = t[(t.confidence >= 0.7) & (t.confidence < 0.8)]
    print(f"\nraising min_confidence 0.7 -> 0.8 would drop {len(lost)} particles here, {int(lost.real.sum())} of them real")


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--nm-per-px', type=float, default=0.05)
    ap.add_argument('--images', choices=('odd', 'all'), default='all')
    main(ap.parse_args())
