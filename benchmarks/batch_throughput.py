"""Throughput of `analyze_folder` on simulated 1024² micrographs: images/min and particles/min for 1 and 2 workers.

Usage: OMP_NUM_THREADS=1 python benchmarks/batch_throughput.py [-n 8] [--workers 1 2] [--model classical|PATH]
The micrographs are simulated once (seeded) into --data (default: a temporary folder). The timed part is the whole
`analyze_folder` call — process start-up, model loading, segmentation, measurement and every output written — so the
figures are what a chemist gets. The default model is the shipped U-Net, or the classical segmentation if it is not
installed.
"""
import argparse, os, platform, shutil, sys, tempfile, time, warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def simulate(folder: Path, n: int, size: int = 1024, nm_per_px: float = 0.04, seed: int = 0) -> list:
    "n simulated Au micrographs of size² px (about 40 particles each), written once as calibrated TIFFs."
    from hrtem_np.io import save_micrograph
    from hrtem_np.synth import simulate_micrograph
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder/f'sim_{size}_{i:03d}.tif'
        if not p.exists():
            m, _, _ = simulate_micrograph((size, size), nm_per_px, n_particles=40, element='Au', diameter_nm=2.5,
                                          touching_fraction=0.15, seed=seed + i)
            save_micrograph(m, p)
        paths.append(p)
    return paths


def default_model():
    from hrtem_np.segment import load_model
    try: load_model(None); return None, 'shipped U-Net'
    except FileNotFoundError: return 'classical', 'classical (shipped U-Net not installed)'


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('-n', type=int, default=8, help='number of micrographs (default 8)')
    ap.add_argument('--size', type=int, default=1024, help='image edge, px (default 1024)')
    ap.add_argument('--workers', type=int, nargs='+', default=[1, 2], help='worker counts to time (default 1 2)')
    ap.add_argument('--model', default=None, help="'classical' or a model path; default: the shipped U-Net")
    ap.add_argument('--data', type=Path, default=None, help='folder for the simulated micrographs (kept)')
    a = ap.parse_args()
    import torch; torch.set_num_threads(1)
    from hrtem_np.batch import analyze_folder
    model, model_name = default_model() if a.model is None else (a.model, a.model)
    tmp = Path(tempfile.mkdtemp(prefix='hrtem_bench_'))
    t = time.perf_counter()
    paths = simulate(a.data or tmp/'data', a.n, a.size)
    print(f"simulated {len(paths)} micrographs {a.size}×{a.size} px in {time.perf_counter() - t:.0f} s")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; model: {model_name}")
    print(f"{'workers':>7} {'wall s':>8} {'images/min':>11} {'particles':>9} {'particles/min':>14} {'s/image (in worker)':>20}")
    for w in a.workers:
        out = tmp/f'out_{w}'
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            res = analyze_folder(paths, out, model=model, workers=w, progress=False)
        wall = time.perf_counter() - t
        ok = res.images[res.images.status == 'ok']
        print(f"{w:>7} {wall:>8.1f} {len(ok)/wall*60:>11.1f} {len(res.particles):>9} {len(res.particles)/wall*60:>14.0f} "
              f"{ok.total_s.mean():>20.2f}")
        if res.n_failed: print(res.summary())
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
