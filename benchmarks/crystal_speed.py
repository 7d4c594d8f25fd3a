"""Seconds `hrtem_np.crystal.lattice_spacings` needs for 1 000 particles.

Synthetic micrographs of Au particles (3 nm, [110] fringes, 0.02 nm/px, ~170 px crops → 512² FFTs) on amorphous
speckle, 100 particles per 1 600 × 1 600 px image, 10 images. Times the analysis only, with and without hkl indexing.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/crystal_speed.py [n_particles]
"""
import os
os.environ.setdefault('OMP_NUM_THREADS', '1')
import sys
import time
import numpy as np
from scipy import ndimage as ndi
from hrtem_np.crystal import fringe_pattern, lattice_spacings, zone_fringes

NM_PER_PX, CELL_PX, GRID = 0.02, 160, 10     # 10 × 10 particles per image


def synthetic_image(seed):
    "One image of GRID² particles (3 nm ± 15 %, Au [110] fringes, random in-plane rotation) and its labels."
    rng = np.random.default_rng(seed)
    n = CELL_PX*GRID
    img = ndi.gaussian_filter(rng.normal(0, 1, (n, n)), 0.06/NM_PER_PX)
    img /= img.std()
    labels = np.zeros((n, n), np.int32)
    yy, xx = np.indices((CELL_PX, CELL_PX))
    for k in range(GRID*GRID):
        i, j = divmod(k, GRID)
        r_px = 1.5*(0.85 + 0.3*rng.random())/NM_PER_PX
        disk = np.hypot(yy - CELL_PX/2, xx - CELL_PX/2) < r_px
        sl = (slice(i*CELL_PX, (i+1)*CELL_PX), slice(j*CELL_PX, (j+1)*CELL_PX))
        f = fringe_pattern((CELL_PX, CELL_PX), NM_PER_PX, zone_fringes('Au', (1, 1, 0), rotation_deg=rng.uniform(0, 180)))
        img[sl] += np.where(disk, f - 1.0, 0)
        labels[sl][disk] = k + 1
    return (img + rng.normal(0, 0.5, img.shape)).astype(np.float32), labels


def main(n_particles=1000):
    n_images = max(1, round(n_particles/GRID**2))
    images = [synthetic_image(s) for s in range(n_images)]
    n = sum(int(lab.max()) for _, lab in images)
    for element in (None, 'Au'):
        t0, c0, crystalline = time.perf_counter(), time.process_time(), 0
        for img, lab in images:
            crystalline += int(lattice_spacings(img, lab, element, nm_per_px=NM_PER_PX).crystalline.sum())
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"lattice_spacings(element={element!r}): {n} particles, {1000*wall/n:.1f} s per 1 000 particles wall-clock "
              f"({1000*cpu/n:.1f} s CPU, one thread); {crystalline}/{n} found crystalline")


if __name__ == '__main__':
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
