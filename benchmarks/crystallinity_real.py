"""The crystallinity rule on the real microscope files we have (issue 23): what it calls, what it rejects, and why.

Each file is analysed as a user would (`analyze(..., crystal=True, edge='flag')`, shipped model), with the element
named; the script prints, per file, the particles, how many are called crystalline (a reflection indexes to the
element), the reflection families found, and the rejected reflections counted by reason (graphitic carbon, JPEG
block, edge streak, beyond the information limit). A second element can be tried on the same outlines
(`lattice_spacings`), to show what the rule says when the stated element is wrong.

    OMP_NUM_THREADS=2 python benchmarks/crystallinity_real.py [--vendor ../shared/data/vendor] [--markdown]
"""
import argparse, re, sys, time, warnings
from collections import Counter
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hrtem_np.batch import analyze  # noqa: E402
from hrtem_np.crystal import lattice_spacings  # noqa: E402

FILES = [  # (file under vendor/, what it is, element stated, another element tried on the same outlines)
    ('temul/example_Au_nanoparticle.emd', 'Au particles, HAADF-STEM 300 kV', 'Au', None),
    ('rosettasciio/digitalmicrograph/2D/multi_signal.dm3', 'HAADF image of particles (material not recorded)', 'Au', None),
    ('ncempy/Acquisition_18.emd', 'atomic-resolution image, perovskite-like lattice', 'Au', 'SrTiO3'),
]


def families(t:pd.DataFrame)->str:
    "The indexed families and how often they occur among the particles' strongest reflections."
    hk = Counter(v for c in t if re.fullmatch(r'hkl\d', c) for v in t[c].dropna())
    return ', '.join(f"{{{h}}}×{n}" for h, n in hk.most_common())


def rejected(t:pd.DataFrame)->str:
    "Rejected reflections counted by reason."
    why = Counter(re.sub(r'^[\d.]+ nm ', '', r) for s in t['rejected'].dropna() for r in s.split('; '))
    return ', '.join(f"{w} {n}" for w, n in why.most_common()) or 'none'


def row(name, what, element, t):
    c = t['crystalline'].fillna(False).astype(bool)
    return dict(file=name, what=what, element=element, particles=len(t), crystalline=int(c.sum()),
                crystalline_pct=round(100*c.mean(), 1) if len(t) else float('nan'), indexed=families(t),
                rejected_reflections=rejected(t))


def main(a):
    t0, rows = time.time(), []
    vendor = Path(a.vendor)
    if not vendor.exists(): sys.exit(f"{vendor} not found: this benchmark needs ../shared/data/vendor beside the repo")
    for f, what, el, other in FILES:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            an = analyze(vendor/f, element=el, crystal=True, edge='flag', progress=False)
        rows.append(row(f, what, el, an.particles))
        if other:
            rows.append(row(f, what, other, lattice_spacings(an.micrograph, an.labels, element=other)))
    df = pd.DataFrame(rows)
    print(f"crystallinity on real files, {time.strftime('%Y-%m-%d')}, {time.time() - t0:.0f} s\n")
    print(df.to_markdown(index=False) if a.markdown else df.to_string(index=False))


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--vendor', default=str(ROOT.parent/'shared'/'data'/'vendor'))
    ap.add_argument('--markdown', action='store_true', help='print a markdown table for the docs')
    main(ap.parse_args())
