"""Reproduce the shipped segmentation model end to end from a seed, on a CPU (or a GPU when there is one).

The shipped model was trained in three phases (about 4.5 h on 2 CPU cores in all):

    # phase 1: from random weights, 480 simulated micrographs (work_data/)
    python tools/train_shipped_model.py simulate --n 480 --n-valid 48
    python tools/train_shipped_model.py train --epochs 8 --steps 62 --bs 8 --cut -3 --bf16 --lr 3e-3
    python tools/train_shipped_model.py train --epochs 13 --steps 62 --bs 8 --cut -3 --bf16 --lr 1e-3   # 5 more epochs
    python tools/train_shipped_model.py export --cut -3 --out work_data/phase1
    # phase 2: warm start from phase 1, 1920 fresh micrographs from the current simulator (work_data/v2/)
    python tools/train_shipped_model.py simulate --data work_data/v2 --n 1920 --n-valid 48 --shard 0/2 &   # 2 processes
    python tools/train_shipped_model.py simulate --data work_data/v2 --n 1920 --n-valid 48 --shard 1/2
    python tools/train_shipped_model.py train --data work_data/v2 --init work_data/phase1.safetensors \
        --epochs 9 --steps 240 --bs 8 --cut -3 --bf16 --lr 1e-3 --threads 2
    python tools/train_shipped_model.py export --data work_data/v2 --init work_data/phase1.safetensors --cut -3 \
        --steps 240 --lr 1e-3                       # fp16 safetensors + model card into hrtem_np/models/
    # phase 3: fine-tune the phase-2 model with a Lovász hinge (IoU surrogate) on 1920 more (validation set shared)
    mkdir -p work_data/v3 && ln -sfn ../v2/valid work_data/v3/valid
    python tools/train_shipped_model.py simulate --data work_data/v3 --seed 3 --n 1920 --shard 0/2 &   # and 1/2
    python tools/train_shipped_model.py train --data work_data/v3 --init hrtem_np/models/hrtem_unet.safetensors \
        --epochs 6 --steps 240 --bs 8 --cut -3 --bf16 --lr 4e-4 --threads 2 --seed 3 --lovasz 0.5 --hours 1.6
    python tools/train_shipped_model.py export --data work_data/v3 --init hrtem_np/models/hrtem_unet.safetensors \
        --cut -3 --steps 240 --lr 4e-4 --seed 3 --lovasz 0.5

`--grow resnet34` (with `--init`, on `train` and `export`) deepens the start model's encoder to ResNet-34 with the same
cut and decoder: shared weights are copied and the extra residual blocks start as the identity (phase 6, not shipped;
nbs/05_evaluate.ipynb has its figures).

`--working-nm-per-px` and `--crop-px` change the network's pixel size and training crop (defaults 0.07 nm/px, 192 px);
with `--init`, the start model's weights are fine-tuned at the new scale and the card records it.

Every stage is resumable: re-running `simulate` only makes the missing images; `train` continues from the last
checkpoint in <data>/checkpoints. Data live in work_data/ (ignored by git; about 1.4 GB in all). With more images than
crops per epoch, an epoch still takes at least one crop from every image, larger ones proportionally more, so
`--steps 240` on 1920 images runs 253–255 steps of 8; `train` records the real number and `export` puts it in the card.
"""
import argparse, json, math, os, sys, time
from pathlib import Path
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT/'work_data'
WORKING_NM_PER_PX = 0.07   # the network's pixel size (nm): a 1 nm particle is ~14 px across
CROP_PX = 192              # training crop at the working scale (13.4 nm)
DEGRADE_P = 0.0            # probability of degradation augmentations per crop (--robust: 0.5)
BLUR_SHARE = 0.55          # fraction of the degraded crops that are blurred or drifted (--blur-share)
MIN_FOV_NM = 15.0          # every simulated image is at least this wide, so crops (with scale jitter) fit

def _conditions(seed, i):
    "Domain-randomised conditions for image i; the field of view is widened so it covers MIN_FOV_NM."
    from hrtem_np.synth import random_conditions
    p = random_conditions(np.random.default_rng([seed, i]))['nm_per_px']
    side = int(min(768, max(256, math.ceil(MIN_FOV_NM/p))))
    return random_conditions(np.random.default_rng([seed, i]), shape=(side, side))

def _train_carbon(box_yx_nm, thickness_nm, rng, outlines, uneven=0.0, edge=False, blobs=0):
    """Training support with variety (the robustness bench's support is built differently, on purpose): the built-in
    film, thinned by a smooth random map (`uneven`), cut by a wavy film edge with vacuum beyond it (`edge`, clear of
    the particles), plus `blobs` Gaussian lumps of film atoms (contamination)."""
    from scipy.ndimage import gaussian_filter, map_coordinates
    from hrtem_np.synth import _carbon_film
    Ly, Lx = box_yx_nm
    c = _carbon_film(box_yx_nm, thickness_nm*(1 + uneven), rng)
    if uneven > 0 and len(c):
        g = gaussian_filter(rng.standard_normal((32, 32)), 3, mode='wrap'); g /= max(np.abs(g).max(), 1e-9)
        t = thickness_nm*(1 + uneven*map_coordinates(g, [c[:, 1]/Ly*31, c[:, 0]/Lx*31], order=1, mode='nearest'))
        c = c[-c[:, 2] < t]
    pts = np.vstack(outlines) if len(outlines) else np.empty((0, 2))
    if edge and len(c):
        for _ in range(200):   # a straight-ish film edge: vacuum on one side of a wavy line, away from the particles
            a, off = rng.uniform(0, 2*np.pi), rng.uniform(0.2, 0.8)
            n = np.array([np.cos(a), np.sin(a)])
            d0 = off*(abs(n[0])*Lx + abs(n[1])*Ly) + min(0.0, n[0]*Lx) + min(0.0, n[1]*Ly)
            wav = lambda xy: xy @ n - d0 + 0.4*np.sin(xy @ np.array([-n[1], n[0]])/rng.uniform(1.5, 4.0) + rng.uniform(0, 6.3))
            if not len(pts) or (wav(pts) < -0.8).all():
                c = c[wav(c[:, :2]) < 0]; break
    for _ in range(blobs):
        xy, r = rng.uniform([0, 0], [Lx, Ly]), rng.uniform(0.5, 1.8)
        if len(pts) and np.min(np.linalg.norm(pts - xy, axis=1)) < r + 1.0: continue
        k = int(80*r**3)   # about the film density: a subtle lump, not a particle
        c = np.vstack([c, np.column_stack([xy + rng.normal(0, r/2, (k, 2)), -thickness_nm - np.abs(rng.normal(0, r/2, k))])])
    return c

def _robust_conditions(seed, i):
    """Phase-7 conditions: `_conditions` widened towards what users see: edge particles always allowed, dense and
    low-dose fields, thick uneven carbon, film edges, contamination, empty fields, Cs up to 2 mm, MTF up to 1.5 px."""
    from functools import partial
    c = _conditions(seed, i)
    rng = np.random.default_rng([seed, i, 7])
    c.update(allow_edge=True, cs_mm=c['cs_mm'] if c['cs_mm'] < 0.1 else float(rng.uniform(0.4, 2.0)),
             mtf_sigma_px=float(rng.uniform(0.2, 1.5)), carbon_thickness_nm=float(rng.uniform(2, 14)))
    if c['cs_mm'] >= 0.1:
        from hrtem_np.synth import scherzer_defocus_nm
        c['defocus_nm'] = float(rng.uniform(0.4, 2.4)*scherzer_defocus_nm(c['voltage_kV'], c['cs_mm']))
    u = rng.random()
    if u < 0.1: c['n_particles'] = 0                                             # empty carbon
    elif u < 0.3:                                                                 # dense, low dose
        fov = c['shape'][0]*c['nm_per_px']
        c.update(n_particles=int(min(60, 0.35*fov*fov/(np.pi/4*(1.2*c['diameter_nm'])**2))), touching_fraction=0.4,
                 dose_e_per_A2=float(max(np.exp(rng.uniform(np.log(30), np.log(300))), 4/(10*c['nm_per_px'])**2)))
    c['carbon'] = partial(_train_carbon, uneven=float(rng.uniform(0, 0.5)), edge=bool(rng.random() < 0.15),
                          blobs=int(rng.integers(0, 6)) if rng.random() < 0.25 else 0)
    return c

CONDITIONS = _conditions   # --robust switches to _robust_conditions

def simulate(n, seed, out, shard=(0, 1)):
    "Simulate n micrographs (resumable) as npz: image, labels, nm_per_px, conditions; `shard` (k, m) makes every m-th from k."
    from hrtem_np.synth import simulate_micrograph
    out.mkdir(parents=True, exist_ok=True)
    t0, made = time.time(), 0
    for i in range(shard[0], n, shard[1]):
        f = out/f'{i:05d}.npz'
        if f.exists(): continue
        c = CONDITIONS(seed, i)
        for _ in range(20):   # a dense field with no room: fewer particles
            try: m, labels, truth = simulate_micrograph(**c, seed=int(seed*100000 + i)); break
            except ValueError as e:
                if 'No room' not in str(e): raise
                c['n_particles'] = int(c['n_particles']*0.8)
        tmp = f.with_name(f'{f.stem}.tmp{os.getpid()}.npz')
        np.savez_compressed(tmp, image=m.image, labels=labels.astype(np.int32), nm_per_px=m.nm_per_px,
                            conditions=json.dumps({k: v for k, v in c.items() if k != 'carbon'}, default=str))
        os.replace(tmp, f); made += 1
        if made % 20 == 0: print(f"{out.name}: {i+1}/{n} ({(time.time()-t0)/made:.1f} s/image)", flush=True)
    print(f"{out.name}: {n} images ready ({made} new, {time.time()-t0:.0f} s)", flush=True)

def load_items(folder):
    "(Micrograph, mask) pairs from a simulated folder."
    from hrtem_np.io import Micrograph
    items = []
    for f in sorted(Path(folder).glob('*.npz')):
        z = np.load(f)
        items.append((Micrograph(z['image'], float(z['nm_per_px']), str(f), 'metadata'), z['labels'] > 0))
    return items

def grow_state(src_state, model):
    """State dict for `model`, a ResNet U-Net with a deeper encoder of the same widths (resnet18 → resnet34), from
    `src_state`: every shared weight copied, every extra residual block started as the identity (its last BatchNorm's
    scale and shift zeroed, so the block adds nothing), so the grown network computes what the source did."""
    import re, torch
    dst = model.state_dict()
    bad = [k for k, v in src_state.items() if k not in dst or dst[k].shape != v.shape]
    if bad: raise ValueError(f"cannot grow: {len(bad)} source weights have no place in the new model (e.g. {bad[0]}); "
                             "the encoders must have the same widths, e.g. resnet18 → resnet34 with the same cut")
    new = {**dst, **{k: v.to(dst[k].dtype) for k, v in src_state.items()}}
    blocks = {m.group(1) for k in dst if k not in src_state for m in [re.match(r'(.*\.\d+\.)(conv|bn)\d+\.', k)] if m}
    for b in blocks:  # its last BatchNorm: bn2 in a BasicBlock, bn3 in a Bottleneck
        bn = max(k for k in dst if k.startswith(f'{b}bn') and k.endswith('.weight'))[:-len('weight')]
        new[bn + 'weight'], new[bn + 'bias'] = torch.zeros_like(dst[bn + 'weight']), torch.zeros_like(dst[bn + 'bias'])
    return new

def _grown_learner(grow, init, **kw):
    "A learner whose encoder is `grow` (same cut and scale as the `init` model), started from `init`'s weights."
    from hrtem_np.segment import segmenter_learner, load_model
    start = load_model(init)
    learn = segmenter_learner(arch=grow, pretrained=None, cut=start.card['cut'], **kw)
    learn.model.load_state_dict(grow_state(start.model.state_dict(), learn.model))
    learn.segmenter_card['training']['grown_from'] = (
        f"{init} ({start.card['arch']}, cut {start.card['cut']}): shared weights copied, the extra residual blocks of "
        f"{grow} started as the identity (last BatchNorm zeroed), so training began from the start model's outputs")
    return learn

SEG_TRACK = ROOT.parent/'shared'/'data'/'real'/'seg_track'
REAL_SCALES = (0.04, 0.05, 0.06, 0.07, 0.08)  # seg_track has no calibration: each image at every plausible pixel size
REAL_REPEAT = 2  # ... twice, so that real crops are about a tenth of the training crops

def real_items(ids):
    "(Micrograph, expert mask) pairs of seg_track images `ids`, each at every pixel size in REAL_SCALES, REAL_REPEAT times."
    from PIL import Image
    from hrtem_np.io import load_micrograph
    if ids and not (SEG_TRACK/'images').is_dir(): raise SystemExit(f"--real-train: no seg_track images at {SEG_TRACK}")
    items = []
    for i in ids:
        mask = np.asarray(Image.open(SEG_TRACK/'labels'/f'label_{i}.png'))[..., 0] > 0
        for s in REAL_SCALES:
            items += [(load_micrograph(SEG_TRACK/'images'/f'image_{i}.png', nm_per_px=s), mask)]*REAL_REPEAT
    return items

def train(hours, epochs, lr, arch, cut, bs, threads, seed, steps, bf16, init=None, lovasz=0.0, grow=None, real=()):
    "Train (resumably) at the working scale; a checkpoint is written after every epoch."
    import torch
    from fastai.callback.tracker import SaveModelCallback
    from fastai.callback.core import Callback

    class CPUBFloat16(Callback):
        "bfloat16 autocast on the CPU (about 2× faster training steps on CPUs with avx512_bf16); fastai's own is CUDA-only."
        order = 10
        def before_batch(self): self._ac = torch.autocast('cpu', dtype=torch.bfloat16); self._ac.__enter__()
        def after_pred(self): self.learn.pred = self.pred.float()
        def after_loss(self): self._ac.__exit__(None, None, None)

    from hrtem_np.segment import segmenter_learner, CEDiceLoss
    torch.set_num_threads(threads)
    train_items, valid_items = load_items(DATA/'train'), load_items(DATA/'valid')
    train_items += real_items(real)
    print(f"{len(train_items)} training ({len(real)} real seg_track images among them), {len(valid_items)} validation micrographs", flush=True)
    kw = dict(working_nm_per_px=WORKING_NM_PER_PX, crop_px=CROP_PX, bs=bs, seed=seed, invert_p=0.1, degrade_p=DEGRADE_P, blur_share=BLUR_SHARE,
              crops_per_epoch=bs*steps, loss_func=CEDiceLoss(lovasz_weight=lovasz))
    if grow: learn = _grown_learner(grow, init, items=train_items, valid_items=valid_items, **kw)
    else: learn = segmenter_learner(train_items, valid_items, arch=arch, pretrained=init, cut=cut, **kw)
    learn.path = DATA; learn.model_dir = 'checkpoints'
    ck = DATA/'checkpoints'; state = ck/'state.json'
    done = json.loads(state.read_text())['epochs_done'] if state.exists() else 0
    if done: learn.load('last', with_opt=True); print(f"resuming after epoch {done}", flush=True)
    deadline = time.time() + hours*3600

    class Checkpoint(Callback):
        order = 90
        def after_epoch(self):
            self.learn.save('last', with_opt=True)
            n = done + self.epoch + 1
            vals = dict(zip(self.recorder.metric_names[1:-1], [float(v) for v in self.recorder.values[-1]]))
            hist = json.loads(state.read_text())['history'] if state.exists() else []
            state.write_text(json.dumps(dict(epochs_done=n, steps_per_epoch=len(self.dls.train),
                                             history=hist + [dict(epoch=n, **vals, time=time.time())]), indent=1))
            if time.time() > deadline: raise __import__('fastai.callback.core', fromlist=['CancelFitException']).CancelFitException()

    remaining = epochs - done
    if remaining <= 0: print("all epochs done"); return
    # one-cycle over the remaining epochs (a resumed run restarts the schedule on what is left)
    cbs = [Checkpoint(), SaveModelCallback(monitor='dice', comp=np.greater, fname='best', with_opt=False)]
    if bf16: cbs.append(CPUBFloat16())
    learn.fit_one_cycle(remaining, lr, cbs=cbs)

def export(arch, cut, out=None, init=None, steps=None, lr=None, hardware=None, seed=1, lovasz=0.0, grow=None, real=()):
    "Write the best checkpoint as the shipped fp16 model + card (with the warm-start model's lineage when `init` is given)."
    from hrtem_np.segment import segmenter_learner, save_model, load_model
    valid_items = load_items(DATA/'valid')
    # with `init`, arch and cut come from the start model's card, as in `train` (its weights are replaced by 'best' below)
    kw = dict(items=valid_items[:4], valid_items=valid_items[:4], working_nm_per_px=WORKING_NM_PER_PX, crop_px=CROP_PX, bs=2)
    learn = _grown_learner(grow, init, **kw) if grow else segmenter_learner(arch=arch, pretrained=init, cut=cut, **kw)
    grown = learn.segmenter_card['training'].get('grown_from')
    learn.path = DATA; learn.model_dir = 'checkpoints'
    learn.load('best', with_opt=False)
    st = json.loads((DATA/'checkpoints'/'state.json').read_text())
    hist, steps = st['history'], st.get('steps_per_epoch', steps)  # the steps run, when `train` recorded them
    best = max(hist, key=lambda h: h.get('dice', 0))
    card = learn.segmenter_card
    vdir = DATA/'valid'  # a validation folder shared with an earlier phase is a symlink to it
    vdesc = (f"validation seed {seed + 1000}" if not vdir.is_symlink()
             else f"the validation set of {vdir.resolve().parent.relative_to(ROOT)}")
    train_nm = [float(np.load(f)['nm_per_px']) for f in sorted((DATA/'train').glob('*.npz'))]
    minutes = (hist[-1]['time'] - hist[0]['time']) / 60 * len(hist) / max(1, len(hist) - 1)
    card['training'] = dict(
        data=f"{len(train_nm)} training + {len(valid_items)} validation domain-randomised simulated micrographs "
             f"({'tools/train_shipped_model.py _robust_conditions (edge particles, dense/low-dose, thick uneven carbon, film edges, contamination, empty fields)' if CONDITIONS is not _conditions else 'hrtem_np.synth.random_conditions'}, training seed {seed}, {vdesc}, numpy engine, "
             f"simulator of {time.strftime('%Y-%m-%d')})",
        n_train_images=len(train_nm), n_valid_images=len(valid_items),
        real_images=(f"seg_track images {','.join(map(str, real))} with their expert masks (CC-BY-4.0, msa-em/microscopy-seg-track, "
                     f"DOI 10.69761/HDTA8338), each at assumed {', '.join(map(str, REAL_SCALES))} nm/px; agreement with expert "
                     f"outlines is reported on the other seg_track images only") if real else None,
        nm_per_px_range=[min(train_nm), max(train_nm)], crop_px=CROP_PX, bs=8, steps_per_epoch=steps,
        epochs=len(hist), best_epoch=best['epoch'], loss='CE + Dice' + (f' + {lovasz} × Lovász hinge' if lovasz else ''),
        schedule=f'one-cycle over {len(hist)} epochs at lr {lr}',
        augmentations='dihedral8, scale_jitter 1.15, gamma, contrast, brightness, blur, noise, invert_p 0.1'
                      + (f', degradations with the label unchanged (blur/drift ≤ 3 px, ramps, hot pixels, 8-bit, JPEG 30–95; p {DEGRADE_P}'
                         + (f', blurred or drifted: {BLUR_SHARE} of them' if BLUR_SHARE != 0.55 else '') + ')' if DEGRADE_P else ''),
        precision='bfloat16 autocast on the CPU', pretrained=str(init) if init else None, seed=seed,
        hardware=hardware or f'2 CPU cores, about {minutes:.0f} min', recipe='tools/train_shipped_model.py',
        history=[{k: round(v, 4) for k, v in h.items() if k != 'time'} for h in hist])
    if grown: card['training']['grown_from'] = grown
    if init:  # the lineage: what the start model was trained on, and how well it did
        start = load_model(init)
        import subprocess
        commit = subprocess.run(['git', 'log', '-1', '--format=%h', '--', str(Path(init).resolve().relative_to(ROOT))],
                                capture_output=True, text=True, cwd=ROOT).stdout.strip() if Path(init).resolve().is_relative_to(ROOT) else ''
        card['training']['warm_start'] = dict(weights_sha256=start.card.get('weights_sha256'), git_commit=commit or None,
                                              training=start.card.get('training'), metrics=start.card.get('metrics'))
    card['metrics'] = dict(dice=best.get('dice'), iou=best.get('jaccard_coeff'), valid_loss=best.get('valid_loss'),
                           on=f'validation crops of {len(valid_items)} held-out simulated micrographs at the working scale')
    out = Path(out) if out else ROOT/'hrtem_np'/'models'/'hrtem_unet'
    out.parent.mkdir(exist_ok=True)
    save_model(learn, out, card=card, half=True, overwrite=True)
    print("exported", out)

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('stage', choices=['simulate', 'train', 'export'])
    ap.add_argument('--n', type=int, default=480); ap.add_argument('--n-valid', type=int, default=48)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--hours', type=float, default=1.0); ap.add_argument('--epochs', type=int, default=30)
    ap.add_argument('--lr', type=float, default=2e-3); ap.add_argument('--arch', default='resnet18')
    ap.add_argument('--cut', type=int, default=None); ap.add_argument('--bs', type=int, default=8)
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--steps', type=int, default=50, help='train: steps per epoch (about: every image gets a crop)')
    ap.add_argument('--bf16', action='store_true', help='bfloat16 autocast on the CPU')
    ap.add_argument('--out', default=None, help='export: model path stem (default: the shipped model)')
    ap.add_argument('--data', default=None, help='folder for images and checkpoints (default: work_data)')
    ap.add_argument('--init', default=None, help='train: start from this saved model (warm start) instead of random weights')
    ap.add_argument('--hardware', default=None, help='export: the training hardware, for the model card')
    ap.add_argument('--lovasz', type=float, default=0.0, help='train/export: weight of the Lovász hinge (IoU surrogate) in the loss')
    ap.add_argument('--grow', default=None, help='train/export: deepen the --init model\'s encoder to this arch (e.g. resnet34, same widths and cut), extra blocks starting as the identity')
    ap.add_argument('--shard', default='0/1', help='simulate: k/m makes every m-th image from k (run m processes in parallel)')
    ap.add_argument('--working-nm-per-px', type=float, default=WORKING_NM_PER_PX, help='train/export: the network\'s pixel size, nm')
    ap.add_argument('--crop-px', type=int, default=CROP_PX, help='train/export: training crop edge at the working scale, px')
    ap.add_argument('--robust', action='store_true', help='simulate: phase-7 conditions (_robust_conditions); train/export: degradation augmentations (degrade_p 0.5)')
    ap.add_argument('--real-train', default='', help='train/export: comma-separated seg_track image numbers to add to the training mix with their expert masks (e.g. 0,2,4,...,18); the others stay held out')
    ap.add_argument('--degrade-p', type=float, default=None, help='train/export: probability of degradation augmentations per crop (default: 0.5 with --robust, else 0)')
    ap.add_argument('--blur-share', type=float, default=0.55, help='train/export: fraction of the degraded crops that are blurred or drifted (default 0.55)')
    a = ap.parse_args()
    real = tuple(int(x) for x in a.real_train.split(',') if x.strip())
    if a.data: DATA = Path(a.data).resolve()
    WORKING_NM_PER_PX, CROP_PX = a.working_nm_per_px, a.crop_px
    os.environ.setdefault('OMP_NUM_THREADS', str(a.threads))
    if a.grow and not a.init: ap.error('--grow needs --init: the model whose encoder is deepened')
    if a.robust: CONDITIONS, DEGRADE_P = _robust_conditions, 0.5
    if a.degrade_p is not None: DEGRADE_P = a.degrade_p
    BLUR_SHARE = a.blur_share
    if a.stage == 'simulate':
        shard = tuple(int(x) for x in a.shard.split('/'))
        simulate(a.n_valid, a.seed + 1000, DATA/'valid', shard)
        simulate(a.n, a.seed, DATA/'train', shard)
    elif a.stage == 'train': train(a.hours, a.epochs, a.lr, a.arch, a.cut, a.bs, a.threads, a.seed, a.steps, a.bf16, a.init, a.lovasz, a.grow, real)
    else: export(a.arch, a.cut, a.out, a.init, a.steps, a.lr, a.hardware, a.seed, a.lovasz, a.grow, real)
