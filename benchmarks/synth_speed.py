"""Speed and fidelity of the HRTEM simulator (hrtem_np.synth), fast numpy engine vs the abTEM reference.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synth_speed.py            # everything (~10–20 min on one core)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/synth_speed.py --no-abtem # numpy engine only (~1 min)

The wall-clock columns depend on what else the machine runs; the CPU columns (process time of this one
single-threaded process, abTEM's worker threads included) are the fairer one-core figure on a shared machine.

Prints
1. images/hour (and s/image) for 256² and 512² outputs per engine, on domain-randomised conditions
   (`random_conditions`, the training distribution) for numpy, and on one representative scene for abTEM;
2. engine agreement on identical atoms (same seed), noise-free images (dose 1e9 e⁻/Å², no MTF): Pearson
   correlation inside particles (label > 0) and on the carbon outside them, and the particle contrast
   (mean inside / mean outside − 1) of each engine, for the numpy engine at its default slices (2 nm at ≥ 200 kV,
   1 nm at ≥ 100 kV, else 0.5 nm), at 2 nm and at 0.5 nm.
"""
import argparse, os, time
os.environ.setdefault('OMP_NUM_THREADS', '1')
import numpy as np
from hrtem_np.synth import simulate_micrograph, random_conditions


def speed(engine, shape, n, seed=0):
    "(wall s/image, max wall s, CPU s/image) for n images of the given output shape."
    ts, cpu = [], time.process_time()
    for i in range(n):
        if engine == 'numpy': kw = random_conditions(np.random.default_rng([seed, i]), shape=shape)
        else: kw = dict(shape=shape, nm_per_px=0.05, n_particles=max(2, shape[0]*shape[1]//8192), diameter_nm=2.5, carbon_thickness_nm=4)
        t = time.perf_counter()
        simulate_micrograph(**kw, engine=engine, seed=1000 + i)
        ts.append(time.perf_counter() - t)
    return float(np.mean(ts)), float(np.max(ts)), (time.process_time() - cpu)/n


CASES = {  # name: simulate_micrograph kwargs (all noise-free, same seed for both engines)
    '2 nm Au, 200 kV, Scherzer':        dict(diameter_nm=2.0, voltage_kV=200, element='Au'),
    '4.5 nm Au, 200 kV, Scherzer':      dict(diameter_nm=4.5, voltage_kV=200, element='Au', n_particles=2),
    '4.5 nm Pt, 120 kV, Scherzer':      dict(diameter_nm=4.5, voltage_kV=120, element='Pt', n_particles=2),
    '4.5 nm Pt, 80 kV, Scherzer':       dict(diameter_nm=4.5, voltage_kV=80, element='Pt', n_particles=2),
    '3 nm Cu, 300 kV, Cs-corr. −8 nm':  dict(diameter_nm=3.0, voltage_kV=300, element='Cu', cs_mm=0.0, defocus_nm=-8.0),
    '2.5 nm Au, 200 kV, −150 nm':       dict(diameter_nm=2.5, voltage_kV=200, element='Au', defocus_nm=-150.0),
}


def agreement(seed=3, shape=(256, 256), nm_per_px=0.05):
    "Per case: correlations of the numpy engine (default, 2 nm and 0.5 nm slices) with abTEM, inside/outside particles."
    rows = []
    for name, kw in CASES.items():
        base = dict(shape=shape, nm_per_px=nm_per_px, n_particles=3, diameter_spread=0.05, zone_fraction=1.0,
                    carbon_thickness_nm=3.0, dose_e_per_A2=1e9, mtf_sigma_px=0.0, seed=seed)
        base.update(kw)
        t = time.perf_counter(); ref, lab, _ = simulate_micrograph(**base, engine='abtem'); t_ref = time.perf_counter() - t
        R = ref.image/ref.image[lab == 0].mean()
        done = set()
        for dz in (None, 2.0, 0.5):   # None: the default (automatic) slices
            m, lab2, _ = simulate_micrograph(**base, slice_thickness_nm=dz)
            dz = m.metadata['slice_thickness_nm']
            if dz in done: continue
            done.add(dz)
            assert (lab2 == lab).all()
            A = m.image/m.image[lab == 0].mean()
            cin, cout = (np.corrcoef(A[s], R[s])[0, 1] for s in (lab > 0, lab == 0))
            rows.append((name, f'{dz}' + (' (default)' if len(done) == 1 else ''), cin, cout, A[lab > 0].mean() - 1, R[lab > 0].mean() - 1, t_ref))
    return rows


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--no-abtem', action='store_true', help='numpy engine only')
    ap.add_argument('--n', type=int, default=8, help='numpy images per size')
    ap.add_argument('--skip-speed', action='store_true', help='only the engine agreement')
    ap.add_argument('--skip-agreement', action='store_true', help='only the speed')
    a = ap.parse_args()
    try:
        import abtem  # noqa: F401
        have_abtem = not a.no_abtem
    except ImportError:
        have_abtem = False
        print('abTEM not installed: reference engine skipped (pip install abtem)')
    print(f'numpy {np.__version__}, one thread (OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS")})')
    simulate_micrograph((64, 64), 0.05, n_particles=1, diameter_nm=1.5, seed=0)   # warm-up: carbon patch, imports
    print('\n== speed ==')
    print(f'{"engine":8s} {"output":>8s} {"s/image":>9s} {"max s":>7s} {"images/hour":>12s} {"CPU s/image":>12s} {"images/CPU-hour":>16s}')
    for engine in ([] if a.skip_speed else ['numpy'] + (['abtem'] if have_abtem else [])):
        for shape in [(256, 256), (512, 512)]:
            mean_s, max_s, cpu_s = speed(engine, shape, a.n if engine == 'numpy' else 1)
            print(f'{engine:8s} {shape[0]:>4d}×{shape[1]:<3d} {mean_s:9.2f} {max_s:7.2f} {3600/mean_s:12.0f} {cpu_s:12.2f} {3600/cpu_s:16.0f}', flush=True)
    if have_abtem and not a.skip_agreement:
        print('\n== agreement with abTEM (same atoms, noise-free, 256×256 px at 0.05 nm/px, 3 nm carbon) ==')
        print(f'{"case":34s} {"slice nm":>13s} {"r inside":>9s} {"r carbon":>9s} {"contrast numpy":>15s} {"contrast abTEM":>15s}')
        for name, dz, cin, cout, cn, ca, t_ref in agreement():
            print(f'{name:34s} {dz:>13s} {cin:9.3f} {cout:9.3f} {cn:15.3f} {ca:15.3f}', flush=True)
