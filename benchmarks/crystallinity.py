"""How specific and how sensitive the `crystalline` call of `hrtem_np.crystal.lattice_spacings` is (issue 23).

A particle is crystalline only when a reflection indexes to the stated metal; reflections at graphitic-carbon
spacings, JPEG 8-px block harmonics and edge streaks are rejected (`reflection_artefact`). This script measures:

1. **False calls on carbon**: disks of 2–4 nm placed on particle-free fields of graphitised carbon
   (`synth.graphitic_carbon`, 30 % of the field in edge-on turbostratic stacks) and of amorphous carbon saved as
   JPEG q 75 at 0.0465 nm/px (the block period of a real Pt JPEG): the fraction called crystalline.
2. **Sensitivity**: the fraction of simulated particles called crystalline (indexed), on the robustness bench's
   clean abTEM micrographs (its truth outlines, each image's own element), and on graphitic carbon.

"before" = the rule until 2026-12-03 (any reflection above the SNR threshold, artefacts included).

    OMP_NUM_THREADS=1 python benchmarks/crystallinity.py [--bench work_data/bench]
"""
import argparse, io, json, sys, time, warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from skimage.draw import disk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hrtem_np.crystal import lattice_spacings  # noqa: E402
from hrtem_np.io import Micrograph  # noqa: E402
from hrtem_np.synth import graphitic_carbon, simulate_micrograph  # noqa: E402


def calls(t:pd.DataFrame)->dict:
    "Particles, crystalline now (indexed), and before (any reflection, artefacts included)."
    before = (t.n_reflections.fillna(0) + t.n_rejected.fillna(0)) > 0
    return dict(n=len(t), crystalline=int(t.crystalline.fillna(False).sum()), before=int(before.sum()))


def disks(shape, nm, rng, n=12):
    "Non-overlapping disks of 2–4 nm, fully inside the field."
    L, k = np.zeros(shape, np.int32), 0
    for _ in range(n):
        r = rng.uniform(1.0, 2.0)/nm; c = rng.uniform(r + 2, np.array(shape) - r - 2)
        rr, cc = disk(c, r, shape=shape)
        if (L[rr, cc] == 0).all(): k += 1; L[rr, cc] = k
    return L


def jpeg(img, q=75):
    lo, hi = np.percentile(img, [0.5, 99.5])
    b = io.BytesIO(); Image.fromarray((np.clip((img - lo)/(hi - lo), 0, 1)*255).astype(np.uint8)).save(b, 'JPEG', quality=q)
    return np.asarray(Image.open(io.BytesIO(b.getvalue())), np.float32)


def main(a):
    warnings.simplefilter('ignore')
    t0, rows = time.time(), []
    for seed in range(a.fields):
        for nm in (0.04, 0.06):
            m, _, _ = simulate_micrograph((384, 384), nm, n_particles=0, seed=seed, carbon=graphitic_carbon(0.3))
            rows.append(dict(test='carbon only: graphitised carbon, disks', **calls(lattice_spacings(m, disks(m.shape, nm, np.random.default_rng(seed)), element='Au'))))
            m, lab, _ = simulate_micrograph((384, 384), nm, n_particles=int(10*(nm/0.05)**2), seed=seed + 10, carbon=graphitic_carbon(0.3), zone_fraction=0.7)
            rows.append(dict(test='Au particles on graphitised carbon', **calls(lattice_spacings(m, lab, element='Au'))))
            m, lab, _ = simulate_micrograph((384, 384), nm, n_particles=int(10*(nm/0.05)**2), seed=seed + 10, zone_fraction=0.7)
            rows.append(dict(test='Au particles on amorphous carbon', **calls(lattice_spacings(m, lab, element='Au'))))
        m, _, _ = simulate_micrograph((512, 512), 0.0465, n_particles=0, seed=seed + 20)
        rows.append(dict(test='carbon only: amorphous, JPEG q75 at 0.0465 nm/px, disks',
                         **calls(lattice_spacings(Micrograph(jpeg(m.image), 0.0465), disks(m.shape, 0.0465, np.random.default_rng(seed)), element='Pt'))))
        m, lab, _ = simulate_micrograph((512, 512), 0.0465, n_particles=12, seed=seed + 30, element='Pt', zone_fraction=0.7)
        rows.append(dict(test='Pt particles, JPEG q75 at 0.0465 nm/px', **calls(lattice_spacings(Micrograph(jpeg(m.image), 0.0465), lab, element='Pt'))))
    bench = Path(a.bench)/'256'
    if bench.is_dir():
        for f in sorted(bench.glob('clean_*.npz')):
            z = np.load(f, allow_pickle=False); el = json.loads(str(z['meta']))['element'][0]
            t = lattice_spacings(Micrograph(z['image'].astype(np.float32), float(z['nm_per_px'])), z['labels'].astype(np.int32), element=el)
            t = t[t.reason.isna() | ~t.reason.astype(str).str.startswith(('too small', 'pixels too coarse'))]
            rows.append(dict(test=f'robustness bench, clean abTEM ({el})', **calls(t)))
    else: print(f"(no bench at {bench}: make it with benchmarks/robustness.py --make)")
    df = pd.DataFrame(rows).groupby('test', sort=False).sum()
    df['crystalline_%'] = (100*df.crystalline/df.n).round(1); df['before_%'] = (100*df.before/df.n).round(1)
    pd.set_option('display.width', 200)
    print(f"crystallinity calls, {time.strftime('%Y-%m-%d')}, {time.time() - t0:.0f} s\n")
    print(df.to_string())


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--fields', type=int, default=4, help='simulated fields per test and pixel size')
    ap.add_argument('--bench', default=str(ROOT/'work_data'/'bench'))
    main(ap.parse_args())
