"""Peak memory of `analyze` against image size, for the shipped model and the classical method (issue 22: no input may
make `analyze` allocate more than a stated bound). Each run is a fresh process (peak RSS from getrusage); the image
is simulated-looking noise with dark disks at the model's working pixel size (0.07 nm/px), so the model works on it
without resampling. Prints MB per megapixel from a straight-line fit and the bound it implies at the largest inputs
hrtem_np accepts (`io.MAX_PIXELS` native, `segment.MAX_WORK_MPX` at the working scale).

    OMP_NUM_THREADS=1 python benchmarks/memory_bound.py [--sizes 1024,2048,3072] [--classical-sizes 2048,4096,6144]
"""
import argparse, json, subprocess, sys, time
from pathlib import Path

import numpy as np

CHILD = r'''
import json, resource, sys, time
import numpy as np
from skimage.draw import disk
from hrtem_np.batch import analyze
from hrtem_np.io import Micrograph
n, method = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
img = rng.normal(1.0, 0.1, (n, n)).astype(np.float32)
for _ in range(n * n // 4000):  # about one 2.5 nm particle per 20 nm² of the field
    r, c = rng.integers(0, n, 2); img[disk((r, c), 18, shape=img.shape)] -= 0.4
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
a = analyze(Micrograph(img, 0.07), model=None if method == 'model' else 'classical')
print(json.dumps(dict(n=n, method=method, particles=len(a.particles), s=time.perf_counter() - t, base_mb=base,
                      peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
'''

def run(n, method):
    out = subprocess.run([sys.executable, '-c', CHILD, str(n), method], capture_output=True, text=True)
    if out.returncode: raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])

def main(a):
    from hrtem_np.io import MAX_PIXELS
    from hrtem_np.segment import MAX_WORK_MPX
    print(f"analyze peak memory, {time.strftime('%Y-%m-%d')}, one process per run (peak RSS)")
    for method, sizes, limit_mpx in (('model', a.sizes, MAX_WORK_MPX), ('classical', a.classical_sizes, MAX_PIXELS / 1e6)):
        rows = [run(int(n), method) for n in sizes.split(',')]
        mpx = np.array([r['n'] ** 2 / 1e6 for r in rows]); peak = np.array([r['peak_mb'] for r in rows])
        k, c = np.polyfit(mpx, peak, 1)
        for r in rows: print(f"  {method:9s} {r['n']}² px ({r['n'] ** 2 / 1e6:5.1f} Mpx): {r['peak_mb']:7.0f} MB peak "
                             f"(imports {r['base_mb']:.0f} MB), {r['s']:.1f} s, {r['particles']} particles")
        print(f"  {method}: {k:.0f} MB per Mpx + {c:.0f} MB; at the largest accepted input ({limit_mpx:.0f} Mpx): "
              f"≈ {(k * limit_mpx + c) / 1024:.1f} GB")

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--sizes', default='1024,2048,3072')
    ap.add_argument('--classical-sizes', default='2048,4096,6144')
    main(ap.parse_args())
