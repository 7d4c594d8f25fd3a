"""Make the sample micrographs shipped in hrtem_np/data/ (used by `hrtem-np demo`).

Deterministic: the same seeds give byte-identical files. Writes, into hrtem_np/data/:
  sample_01.tif … sample_03.tif   simulated Au-on-carbon HRTEM micrographs, ImageJ TIFF (uint16) calibrated in nm
  sample_truth.csv                one row per true particle (`image` = file name; columns of synth's truth table)
  sample_truth_labels.npz         the true label images (int16, compressed), one array per file stem
Usage: python tools/make_sample_data.py [--out DIR] [--overwrite]     (total < 2 MB)
"""
import argparse, io, sys
from pathlib import Path
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hrtem_np.io import Micrograph, save_micrograph, atomic_write  # noqa: E402
from hrtem_np.synth import simulate_micrograph  # noqa: E402

# Three fields of view a chemist might record of one Au synthesis: different magnifications and focus, one with
# touching particles (the watershed has to split them).
SAMPLES = {
    'sample_01': dict(shape=(512, 512), nm_per_px=0.04, n_particles=12, element='Au', diameter_nm=2.6,
                      diameter_spread=0.2, touching_fraction=0.35, voltage_kV=200.0, dose_e_per_A2=800.0, seed=11),
    'sample_02': dict(shape=(512, 512), nm_per_px=0.05, n_particles=16, element='Au', diameter_nm=2.8,
                      diameter_spread=0.25, touching_fraction=0.15, voltage_kV=300.0, dose_e_per_A2=1000.0, seed=22),
    'sample_03': dict(shape=(512, 512), nm_per_px=0.03, n_particles=7, element='Au', diameter_nm=2.4,
                      diameter_spread=0.2, touching_fraction=0.2, voltage_kV=200.0, dose_e_per_A2=1500.0, seed=33),
}
COUNTS_SCALE = 100  # electron counts × 100, rounded, stored as uint16 (keeps the MTF-blurred counts' precision)


def to_uint16(counts: np.ndarray) -> np.ndarray:
    "Counts image as uint16 (× COUNTS_SCALE, rounded), refusing to clip."
    v = np.rint(np.asarray(counts, np.float64)*COUNTS_SCALE)
    if v.min() < 0 or v.max() > 65535: raise ValueError(f"counts range {v.min()}…{v.max()} does not fit uint16")
    return v.astype(np.uint16)


def make(out: Path, overwrite: bool = False) -> list:
    "Simulate the samples and write them to `out`; returns the paths written."
    out.mkdir(parents=True, exist_ok=True)
    truths, labels, written = [], {}, []
    for name, kw in SAMPLES.items():
        m, lab, truth = simulate_micrograph(**kw)
        md = {'title': name, 'simulated': True, 'simulator': 'hrtem_np.synth.simulate_micrograph',
              'seed': kw['seed'], 'intensity': f'electron counts x {COUNTS_SCALE}'}
        written.append(save_micrograph(Micrograph(to_uint16(m.image), m.nm_per_px, None, 'metadata', md),
                                       out/f'{name}.tif', overwrite=overwrite, dtype=np.uint16))
        truths.append(truth.assign(image=f'{name}.tif', nm_per_px=m.nm_per_px))
        labels[name] = lab.astype(np.int16)
        print(f"{name}.tif: {m.shape[0]}×{m.shape[1]} px at {m.nm_per_px} nm/px, {len(truth)} particles "
              f"({int(truth.touching.sum())} touching), mean d = {truth.diameter_nm.mean():.2f} nm")
    truth = pd.concat(truths, ignore_index=True)
    truth = truth[['image', 'nm_per_px'] + [c for c in truth.columns if c not in ('image', 'nm_per_px')]]
    assert truth.touching.any(), "the samples must include touching particles"
    written.append(atomic_write(out/'sample_truth.csv', lambda p: truth.to_csv(p, index=False, float_format='%.5g'),
                                overwrite))
    buf = io.BytesIO(); np.savez_compressed(buf, **labels)
    written.append(atomic_write(out/'sample_truth_labels.npz', lambda p: Path(p).write_bytes(buf.getvalue()), overwrite))
    for p in written: p.chmod(0o644)  # package data must be readable by every user of an installation
    total = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files, {total/1e6:.2f} MB, to {out}")
    assert total < 2e6, "sample data must stay below 2 MB"
    return written


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', type=Path, default=ROOT/'hrtem_np'/'data', help='output folder (default: hrtem_np/data)')
    ap.add_argument('--overwrite', action='store_true', help='replace existing sample files')
    a = ap.parse_args()
    make(a.out, a.overwrite)
