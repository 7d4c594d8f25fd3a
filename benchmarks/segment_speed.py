"""Speed and memory of U-Net segmentation on this machine (CPU unless a GPU is present).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segment_speed.py            # everything (~15 min on one core)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segment_speed.py train      # training s/step only
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segment_speed.py infer      # s/Mpx: segment vs learn.predict
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/segment_speed.py memory     # peak memory, 2048² and 8192²

Untrained weights are used (speed does not depend on them). Times are wall clock and CPU (process) time; on a shared
machine the CPU time is the steadier figure. Peak memory is the growth of the process's maximum resident set size
during the call (Linux VmHWM after a reset), each case in a fresh process.
"""
import json, os, resource, subprocess, sys, time
from pathlib import Path

import numpy as np
import torch

THREADS = int(os.environ.get('OMP_NUM_THREADS', '1'))
torch.set_num_threads(THREADS)
_LEAN = {'last_cross': False}
CONFIGS = {'resnet18 full': dict(arch='resnet18', cut=None),
           'resnet18 cut=-3 (no layer4)': dict(arch='resnet18', cut=-3),
           'resnet34 cut=-3': dict(arch='resnet34', cut=-3),
           'resnet18 full, last_cross=False': dict(arch='resnet18', cut=None, unet_kwargs=_LEAN),
           'resnet18 cut=-3, last_cross=False': dict(arch='resnet18', cut=-3, unet_kwargs=_LEAN)}


def _clock(fn, repeat=1):
    "Best (wall s, cpu s) of `repeat` calls."
    best = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        r = (time.perf_counter() - t, time.process_time() - c)
        best = r if best is None or r[0] < best[0] else best
    return best


def _segmenter(arch, cut, unet_kwargs=None, img_size=256):
    from hrtem_np.segment import Segmenter, _build_unet, _new_card
    torch.manual_seed(0)
    return Segmenter(_build_unet(arch, n_in=1, img_size=img_size, cut=cut, unet_kwargs=unet_kwargs),
                     _new_card(arch, 1, cut, 0.07, img_size, unet_kwargs))


def bench_train(steps=4, crop_px=256, bs=4, configs=tuple(CONFIGS)):
    "Seconds per training step (bs × crop_px², forward + backward + Adam) for each config."
    from hrtem_np.segment import _toy_micrograph, segmenter_learner
    items = [_toy_micrograph((320, 320), n_particles=20, seed=s) for s in range(3)]
    print(f"\n## training step, bs={bs} × {crop_px}², n_in=1, {THREADS} thread(s)")
    print(f"| config | parameters (M) | wall s/step | cpu s/step |\n|---|---|---|---|")
    for name in configs:
        cfg = CONFIGS[name]
        learn = segmenter_learner(items[:2], items[2:], crop_px=crop_px, bs=bs, crops_per_epoch=bs * (steps + 1), **cfg)
        n_par = sum(p.numel() for p in learn.model.parameters()) / 1e6
        learn.model.train()
        xb, yb = learn.dls.train.one_batch()
        opt = torch.optim.Adam(learn.model.parameters(), 1e-3)
        def step():
            loss = learn.loss_func(learn.model(xb), yb); loss.backward(); opt.step(); opt.zero_grad()
        step()  # warm-up
        w, c = _clock(lambda: [step() for _ in range(steps)])
        print(f"| {name} | {n_par:.1f} | {w / steps:.2f} | {c / steps:.2f} |", flush=True)


INFER = ('resnet18 full', 'resnet18 cut=-3 (no layer4)', 'resnet18 cut=-3, last_cross=False')

def bench_infer(side=1024, configs=INFER):
    "Seconds per megapixel: segment (tiled, with and without TTA) and fastai's learn.predict on the whole image."
    from hrtem_np.io import Micrograph
    from hrtem_np.segment import _toy_micrograph, segment, segmenter_learner
    m, _ = _toy_micrograph((side, side), n_particles=200, seed=1)
    mpx = side * side / 1e6
    print(f"\n## inference on a {side}² micrograph (at the working pixel size), {THREADS} thread(s); s/Mpx (wall / cpu)")
    print("| config | segment | segment tta=True (8×) | learn.predict (whole image, no tiles) |\n|---|---|---|---|")
    for name in configs:
        cfg = CONFIGS[name]
        seg = _segmenter(**cfg)
        plain = _clock(lambda: segment(m, seg))
        tta = _clock(lambda: segment(m, seg, tta=True)) if side <= 1024 else (float('nan'),) * 2
        small = [_toy_micrograph((128, 128), seed=s) for s in range(2)]
        learn = segmenter_learner(small[:1], small[1:], crop_px=128, bs=2, **cfg)
        learn.model.load_state_dict(seg.model.state_dict())
        from hrtem_np.segment import _Pair, normalize_intensity
        item = _Pair(normalize_intensity(m.image))
        with learn.no_bar(): pred = _clock(lambda: learn.predict(item))
        f = lambda t: f"{t[0] / mpx:.2f} / {t[1] / mpx:.2f}"
        print(f"| {name} | {f(plain)} | {f(tta)} | {f(pred)} |", flush=True)


def _vm(key):
    "A /proc/self/status figure in GB (VmRSS: now, VmHWM: peak since the last reset)."
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'): return int(line.split()[1]) / 2 ** 20


def _memory_case(side, arch, cut, unet_kwargs=None, how='segment'):
    "Run in a fresh process: peak RSS growth (GB) and wall time of segment (or learn.predict) on a side² image."
    from hrtem_np.io import Micrograph
    from hrtem_np.segment import segment, _Pair, normalize_intensity
    seg = _segmenter(arch, cut, unet_kwargs)
    img = np.random.default_rng(0).normal(size=(side, side)).astype(np.float32)
    m = Micrograph(img, 0.07)
    if how == 'segment':
        segment(Micrograph(img[:256, :256].copy(), 0.07), seg)  # warm-up
        run = lambda: segment(m, seg)
    else:
        from hrtem_np.segment import _toy_micrograph, segmenter_learner
        small = [_toy_micrograph((128, 128), seed=s) for s in range(2)]
        learn = segmenter_learner(small[:1], small[1:], crop_px=128, bs=2, arch=arch, cut=cut, unet_kwargs=unet_kwargs)
        learn.model.load_state_dict(seg.model.state_dict())
        item = _Pair(normalize_intensity(img))
        learn.predict(_Pair(item.img[:256, :256].copy()))  # warm-up
        run = lambda: learn.predict(item)
    Path('/proc/self/clear_refs').write_text('5')  # reset the peak-RSS mark (VmHWM)
    base = _vm('VmRSS')
    t = time.perf_counter(); c = time.process_time()
    run()
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(json.dumps(dict(side=side, peak_gb=_vm('VmHWM') - base, image_gb=img.nbytes / 2 ** 30, seconds=dt, cpu_seconds=dc)))


def bench_memory(cases=((2048, 'resnet18', None, None, 'segment'), (2048, 'resnet18', -3, _LEAN, 'segment'),
                        (2048, 'resnet18', -3, _LEAN, 'learn.predict'), (8192, 'resnet18', -3, _LEAN, 'segment'))):
    "Peak memory of segment (tile_px=512, batch of 4 tiles) for large images, each in a fresh process."
    print(f"\n## peak memory (growth of resident memory during the call), {THREADS} thread(s)")
    print("| image | config | call | peak memory growth (GB) | the image itself (GB) | wall s | cpu s/Mpx |\n|---|---|---|---|---|---|---|")
    for side, arch, cut, kw, how in cases:
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import segment_speed as b; "
                f"b._memory_case({side}, {arch!r}, {cut!r}, {kw!r}, {how!r})")
        out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=os.environ)
        if out.returncode: print(out.stderr[-2000:]); continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {side}² | {arch} cut={cut} {kw or ''} | {how} | {r['peak_gb']:.2f} | {r['image_gb']:.2f} | "
              f"{r['seconds']:.0f} | {r['cpu_seconds'] / (side * side / 1e6):.2f} |", flush=True)


if __name__ == '__main__':
    what = sys.argv[1:] or ['train', 'infer', 'memory']
    print(f"torch {torch.__version__}, {THREADS} thread(s), device cpu, {time.strftime('%Y-%m-%d')}")
    if 'train' in what: bench_train()
    if 'train-lean' in what: bench_train(configs=[k for k in CONFIGS if 'last_cross' in k])
    if 'infer' in what: bench_infer()
    if 'infer-lean' in what: bench_infer(configs=INFER[-1:])
    if 'memory' in what: bench_memory()
