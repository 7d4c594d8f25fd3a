"""Agreement with expert outlines on real bright-field TEM images (seg_track): a model beside the classical baseline.

    OMP_NUM_THREADS=1 python benchmarks/real_agreement.py [--model PATH] [--images 0,3,7] [--scales 0.04,0.05]
                                                          [--thresholds 0.5,0.97] [--tta] [--no-classical]

Data: ../shared/data/real/seg_track beside the repo (20 bright-field TEM images of metal nanoparticles, 512 × 512 px,
with hand-drawn semantic masks; "Deep Learning Applications in Microscopy: Segmentation and Tracking", Elemental
Microscopy (2024), DOI 10.69761/HDTA8338, CC-BY-4.0). Their pixel size was not recorded, so every image is scored at
each ASSUMED pixel size in `--scales` (default 0.04–0.08 nm/px, the plausible range).

Scores, per method and assumed pixel size: pixel IoU (mean over images), object F1 (connected components of both
masks, IoU ≥ 0.5 matching, particles cut by the border ignored, counts pooled over images), boundary offset (px,
`boundary_offset_px` with outline points farther than 20 px from the other outline ignored, mean over images; > 0 =
outlines outside the expert's) and ECD offset (px, predicted − expert equivalent diameter, pooled over all matched
particles). `--images` scores a subset only (e.g. the images a fine-tuned model never saw). Prints one table and
writes nothing (unless `--figure FILE` is given).

Two studies of where the offset comes from print their own table instead:
- `--profile`: the mean intensity and model probability against the distance from the expert outline (0.05 nm/px);
- `--blur-study NM_PER_PX`: simulated micrographs (numpy engine, 60 px particles, random optics) blurred by a Gaussian
  σ = 0, 2, 4, 6 px: the model's offsets from the exact truth; where, relative to the truth outline, the noise-free
  intensity edge passes half-way between particle and support, where it first regains the support level (its foot)
  and where the model's probability passes 0.5 and 0.97; and the edge's steepness at half-way (to compare with the real
  images' in `--profile`).
"""
import argparse, io, os, time
from pathlib import Path

import numpy as np, pandas as pd
from PIL import Image
from scipy import ndimage as ndi

from hrtem_np.io import load_micrograph
from hrtem_np.segment import load_model, segment, segment_classical
from hrtem_np.evaluate import pixel_scores, object_scores, boundary_offset_px, diameter_offset_px

SEG_TRACK = Path(__file__).resolve().parents[1].parent/'shared'/'data'/'real'/'seg_track'
SCALES = (0.04, 0.05, 0.06, 0.07, 0.08)  # assumed pixel sizes, nm/px (the real one is unknown)
MAX_OFFSET_PX = 20  # outline points farther than this from the other outline belong to missed or false particles, px
COLUMNS = ['method', 'nm_per_px', 'image', 'pixel_iou', 'tp', 'fp', 'fn', 'boundary_offset_px', 'diameter_offset_px']

def image_ids(folder=SEG_TRACK)->list:
    "Numbers N of the images/image_N.png that have a labels/label_N.png, in numeric order."
    ids = [int(p.stem.split('_')[1]) for p in (Path(folder)/'images').glob('image_*.png')]
    return sorted(i for i in ids if (Path(folder)/'labels'/f'label_{i}.png').exists())

def load_pair(i:int, nm_per_px:float, folder=SEG_TRACK)->tuple:
    "(Micrograph at the assumed `nm_per_px`, expert mask bool) of image `i`; the RGBA grey PNG is read by hrtem_np.io."
    m = load_micrograph(Path(folder)/'images'/f'image_{i}.png', nm_per_px=nm_per_px)
    return m, np.asarray(Image.open(Path(folder)/'labels'/f'label_{i}.png'))[..., 0] > 0

def score_image(pred, true, nm_per_px:float)->dict:
    "Pixel IoU, object counts and the two offsets (px) of one predicted mask against the expert mask."
    pred = np.asarray(pred, bool)
    o = object_scores(ndi.label(pred)[0], ndi.label(true)[0], nm_per_px)  # the masks are semantic: components are particles
    return dict(pixel_iou=pixel_scores(pred, true)['iou'], tp=o['tp'], fp=o['fp'], fn=o['fn'],
                boundary_offset_px=boundary_offset_px(pred, true, max_px=MAX_OFFSET_PX),
                diameter_offset_px=diameter_offset_px(pred, true))

def score(model=None, images=None, scales=SCALES, thresholds=None, tta=False, classical=True, folder=SEG_TRACK)->pd.DataFrame:
    "One row per method × assumed pixel size × image (`COLUMNS`); the model runs once per image and size for all thresholds."
    seg = load_model(model) if model is None or isinstance(model, (str, Path)) else model
    name = 'model' if model is None else Path(str(model)).stem if isinstance(model, (str, Path)) else 'model'
    thresholds = (seg.threshold,) if thresholds is None else thresholds  # the model's own cut unless asked otherwise
    rows = []
    for s in scales:
        for i in (image_ids(folder) if images is None else images):
            m, true = load_pair(i, s, folder)
            _, proba = segment(m, model=seg, tta=tta, return_proba=True)
            preds = [(f'{name} p>{t:g}', proba > t) for t in thresholds]
            if classical: preds.append(('classical', segment_classical(m)))
            rows += [dict(method=k, nm_per_px=s, image=i, **score_image(p, true, s)) for k, p in preds]
    return pd.DataFrame(rows, columns=COLUMNS)

def summarize(per_image:pd.DataFrame)->pd.DataFrame:
    "Per method and assumed pixel size: images, mean pixel IoU, pooled object F1, mean boundary offset, pooled ECD offset (px)."
    def pool(g):
        tp, fp, fn = g.tp.sum(), g.fp.sum(), g.fn.sum()
        w = g.tp.where(g.diameter_offset_px.notna(), 0)  # each image's mean ECD offset weighted by its matched particles
        return pd.Series(dict(n_images=len(g), pixel_iou=g.pixel_iou.mean(), object_f1=2*tp/max(1, 2*tp + fp + fn),
                              boundary_offset_px=g.boundary_offset_px.mean(),
                              diameter_offset_px=(g.diameter_offset_px.fillna(0)*w).sum()/max(1, w.sum())))
    order = list(dict.fromkeys(per_image.method))
    out = per_image.groupby(['method', 'nm_per_px'], sort=False).apply(pool, include_groups=False)
    out['n_images'] = out.n_images.astype(int)
    return out.reindex(order, level=0)

def edge_profile(values, # 2-D array sampled (image intensity, probability)
                 mask, # bool mask whose outline is the origin
                 bins=np.arange(-12, 16), # signed distances from the outline, px (> 0 outside)
                )->np.ndarray: # mean of `values` over the pixels whose centre lies at each distance (±0.5 px)
    "Mean of `values` against the signed distance of each pixel centre from the outline of `mask` (pixel-centre distances: ±0.3 px)."
    m = np.asarray(mask, bool)
    sd = np.where(m, 0.5 - ndi.distance_transform_edt(m), ndi.distance_transform_edt(~m) - 0.5)
    k = np.round(sd).astype(int)
    return np.array([values[k == b].mean() if (k == b).any() else np.nan for b in bins])

def crossing_px(profile, bins=np.arange(-12, 16), level=0.5, lo=-8, hi=8, outermost=True)->float:
    "Distance (px) where `profile` passes `level` between `lo` and `hi` (the outermost crossing, or the innermost), interpolated."
    sel = (bins >= lo) & (bins <= hi); x, y = bins[sel], np.asarray(profile)[sel] - level
    for j in (range(len(x) - 1, 0, -1) if outermost else range(1, len(x))):
        if y[j - 1]*y[j] <= 0 and y[j] != y[j - 1]: return float(x[j - 1] - y[j - 1]*(x[j] - x[j - 1])/(y[j] - y[j - 1]))
    return float('nan')

def edge_slope_per_px(profile, bins=np.arange(-12, 16))->float:
    "Steepness of a normalised intensity edge where it passes 0.5, per px (a step blurred by a Gaussian σ: 0.40/σ)."
    c = crossing_px(profile, bins)
    return float((np.interp(c + 1, bins, profile) - np.interp(c - 1, bins, profile))/2)

def _normalised(img, mask, bins):
    "Edge profile of `img` scaled so that the particle interior (> 6 px inside) is 0 and the support (> 8 px out) is 1."
    m = np.asarray(mask, bool)
    inside = np.median(img[ndi.distance_transform_edt(m) > 6]); outside = np.median(img[ndi.distance_transform_edt(~m) > 8])
    return (edge_profile(img, m, bins) - inside)/(outside - inside)

def real_profile(model=None, images=None, nm_per_px=0.05, bins=np.arange(-12, 16), folder=SEG_TRACK)->pd.DataFrame:
    "Mean normalised intensity and model probability against the distance from the expert outline, px (one row per bin)."
    seg = load_model(model) if model is None or isinstance(model, (str, Path)) else model
    I, P = [], []
    for i in (image_ids(folder) if images is None else images):
        m, true = load_pair(i, nm_per_px, folder)
        I.append(_normalised(m.image, true, bins)); P.append(edge_profile(segment(m, model=seg, return_proba=True)[1], true, bins))
    return pd.DataFrame(dict(distance_px=bins, intensity=np.nanmean(I, 0), probability=np.nanmean(P, 0)))

def blur_study(model=None, nm_per_px=0.05, n=12, sigmas=(0, 2, 4, 6), bins=np.arange(-12, 16))->tuple:
    "Simulated micrographs (numpy engine) blurred by each Gaussian σ (px): model offsets from the exact truth, and where the truth sits on the intensity edge."
    from hrtem_np.synth import simulate_micrograph, random_conditions
    from hrtem_np.io import Micrograph
    seg = load_model(model) if model is None or isinstance(model, (str, Path)) else model
    rows, prof = [], {s: ([], []) for s in sigmas}
    for seed in range(n):
        kw = dict(random_conditions(np.random.default_rng(100 + seed)), nm_per_px=nm_per_px, shape=(256, 256), n_particles=5,
                  diameter_nm=60*nm_per_px, diameter_range_nm=(30*nm_per_px, 100*nm_per_px), allow_edge=False,
                  invert_contrast=False, touching_fraction=0.0, overlap_fraction=0.0)  # 60 px particles, as on seg_track
        try: m, lab, _ = simulate_micrograph(**kw, seed=seed); m0, _, _ = simulate_micrograph(**{**kw, 'dose_e_per_A2': 1e7}, seed=seed)
        except ValueError: continue  # no room for the particles
        for s in sigmas:
            blur = (lambda a: ndi.gaussian_filter(a, s)) if s else (lambda a: a)
            mask, proba = segment(Micrograph(blur(m.image), nm_per_px, None, 'metadata'), model=seg, return_proba=True)
            prof[s][0].append(_normalised(blur(m0.image), lab > 0, bins)); prof[s][1].append(edge_profile(proba, lab > 0, bins))
            rows.append(dict(sigma_px=s, seed=seed, pixel_iou=pixel_scores(mask, lab)['iou'],
                             boundary_offset_px=boundary_offset_px(mask, lab, max_px=MAX_OFFSET_PX), diameter_offset_px=diameter_offset_px(mask, lab)))
    per = pd.DataFrame(rows)
    out = per.groupby('sigma_px').agg(n_images=('seed', 'size'), pixel_iou=('pixel_iou', 'mean'), boundary_offset_px=('boundary_offset_px', 'mean'),
                                      boundary_offset_sem=('boundary_offset_px', 'sem'), diameter_offset_px=('diameter_offset_px', 'mean'))
    out['intensity_half_px'] = [crossing_px(np.nanmean(prof[s][0], 0), bins) for s in out.index]  # mid-contrast edge vs truth outline
    out['model_half_px'] = [crossing_px(np.nanmean(prof[s][1], 0), bins) for s in out.index]  # model p = 0.5 vs truth outline
    out['model_p97_px'] = [crossing_px(np.nanmean(prof[s][1], 0), bins, 0.97, lo=-12) for s in out.index]  # where p reaches 0.97
    out['support_level_px'] = [crossing_px(np.nanmean(prof[s][0], 0), bins, 1.0, outermost=False) for s in out.index]  # the edge's foot
    out['edge_slope_per_px'] = [edge_slope_per_px(np.nanmean(prof[s][0], 0), bins) for s in out.index]  # compare with --profile
    return out, {s: (np.nanmean(prof[s][0], 0), np.nanmean(prof[s][1], 0)) for s in sigmas}

def figure(per_image:pd.DataFrame, profile:pd.DataFrame, path, model=None, images=(0, 9, 15), nm_per_px=0.05, folder=SEG_TRACK):
    "Expert (green) and model (red) outlines on three crops, the mean edge profile, and the offsets against the assumed pixel size."
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    seg = load_model(model) if model is None or isinstance(model, (str, Path)) else model
    fig, axs = plt.subplots(1, 5, figsize=(16, 3.5), gridspec_kw=dict(width_ratios=[1, 1, 1, 1.3, 1.3]))
    for ax, i in zip(axs[:3], images):
        m, true = load_pair(i, nm_per_px, folder)
        proba = segment(m, model=seg, return_proba=True)[1]
        lab = ndi.label(true)[0]; edge = set(np.r_[lab[0], lab[-1], lab[:, 0], lab[:, -1]])
        inner = [l for l in range(1, lab.max() + 1) if l not in edge]
        big = max(inner, key=lambda l: (lab == l).sum())  # the largest particle inside the field, 150 px around it
        r, c = (int(v) for v in ndi.center_of_mass(lab == big))
        win = np.s_[max(0, r - 75):r + 75, max(0, c - 75):c + 75]
        ax.imshow(m.image[win], cmap='gray'); ax.set_axis_off()
        ax.contour(true[win], [0.5], colors='lime', linewidths=1.2); ax.contour(proba[win], [0.5], colors='red', linewidths=1.2)
        ax.set_title(f'image_{i}, 150 px around a particle', fontsize=9)
    axs[0].plot([], [], c='lime', label='expert'); axs[0].plot([], [], c='red', label='model, p > 0.5'); axs[0].legend(fontsize=7, loc='lower left')
    ax = axs[3]
    ax.plot(profile.distance_px, profile.intensity, 'k.-', label='intensity (particle 0, support 1)')
    ax.plot(profile.distance_px, profile.probability, 'r.-', label='model probability')
    ax.axvline(0, c='lime'); ax.axhline(0.5, c='grey', lw=0.5); ax.axhline(1, c='grey', lw=0.5, ls=':')
    ax.set_xlabel('distance from the expert outline, px (> 0 outside)'); ax.legend(fontsize=7); ax.set_title(f'edge profile, {profile.attrs.get("n", 20)} images', fontsize=9)
    ax = axs[4]
    sm = summarize(per_image).reset_index()
    for (meth, g), c in zip(sm.groupby('method', sort=False), ['red', 'orange', 'purple', 'blue', 'grey']):
        ax.plot(g.nm_per_px, g.boundary_offset_px, 'o-', c=c, label=meth)
        ax.plot(g.nm_per_px, g.diameter_offset_px/2, 's--', c=c, mfc='none')
    ax.plot([], [], 'ko-', label='boundary offset'); ax.plot([], [], 'ks--', mfc='none', label='ECD offset / 2')
    ax.axhspan(-1, 1, color='green', alpha=0.1); ax.axhline(0, c='k', lw=0.5)
    ax.set_xlabel('assumed pixel size, nm/px'); ax.set_ylabel('offset from expert, px'); ax.legend(fontsize=6); ax.set_title('outline offset', fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO(); fig.savefig(buf, dpi=80); plt.close(fig)
    Image.open(buf).convert('RGB').quantize(64).save(path, optimize=True)  # 64 colours: a small file for the docs
    return path

def main(model=None, images=None, scales=SCALES, thresholds=None, tta=False, classical=True, threads=1, profile=False,
         blur_nm_per_px=None, figure_path=None):
    import torch
    torch.set_num_threads(threads)
    t0 = time.time()
    if blur_nm_per_px is not None:
        out, _ = blur_study(model, blur_nm_per_px)
        print(f"simulated micrographs at {blur_nm_per_px} nm/px, model {model or 'shipped'}, blurred by σ px; offsets from the exact "
              f"truth (px); *_half_px: where the noise-free intensity edge / the model probability pass 0.5, px from the truth "
              f"outline; {time.time() - t0:.0f} s\n")
        print(out.to_string(float_format=lambda v: f'{v:.2f}'))
        return out
    if not (SEG_TRACK/'images').is_dir(): raise SystemExit(f"seg_track images not found at {SEG_TRACK} (../shared/data/real/seg_track)")
    if profile:
        pr = real_profile(model, images)
        print(f"mean edge profile of {len(images or image_ids())} seg_track images at 0.05 nm/px, model {model or 'shipped'}: intensity "
              f"(interior 0, support 1) and model probability against the distance from the expert outline, px; {time.time() - t0:.0f} s\n")
        print(pr.to_string(index=False, float_format=lambda v: f'{v:.3f}'))
        print(f"\nintensity 0.5 at {crossing_px(pr.intensity):+.2f} px, back at the support level (1) at "
              f"{crossing_px(pr.intensity, level=1.0, outermost=False):+.2f} px; model probability 0.5 at {crossing_px(pr.probability):+.2f} px; "
              f"edge slope {edge_slope_per_px(pr.intensity):.3f} per px; bright fringe: maximum {pr.intensity.max():.3f} at "
              f"{pr.distance_px[pr.intensity.idxmax()]:+d} px")
        return pr
    per = score(model, images, scales, thresholds, tta, classical)
    sm = summarize(per)
    print(f"{per.image.nunique()} seg_track images ({'all' if images is None else 'images ' + ','.join(map(str, images))}), model "
          f"{model or 'shipped'}{', tta' if tta else ''}; pixel sizes assumed; {time.time() - t0:.0f} s\n")
    print(sm.to_string(float_format=lambda v: f'{v:.3f}'))
    if figure_path:
        ids = sorted(per.image.unique()); pick = tuple(ids[k] for k in sorted({0, len(ids)//2, len(ids) - 1}))
        print('figure:', figure(per, real_profile(model, images), figure_path, model, images=pick))
    return sm

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default=None, help='model file (default: the shipped model)')
    ap.add_argument('--images', default=None, help="comma-separated image numbers to score, or 'odd' (the images the shipped model did not train on; default: all)")
    ap.add_argument('--scales', default=','.join(map(str, SCALES)), help='assumed pixel sizes, nm/px')
    ap.add_argument('--thresholds', default='', help="probability thresholds for the model (default: the model card's)")
    ap.add_argument('--tta', action='store_true'); ap.add_argument('--no-classical', action='store_true')
    ap.add_argument('--profile', action='store_true', help='print the mean edge profile across the expert outline instead')
    ap.add_argument('--blur-study', type=float, default=None, metavar='NM_PER_PX', help='run the blur study on simulated images instead')
    ap.add_argument('--figure', default=None, help='also draw the figure to this file (not in git unless you mean it)')
    ap.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', 1)))
    a = ap.parse_args()
    held_out = {'odd': list(range(1, 20, 2)), 'even': list(range(0, 20, 2))}  # the shipped model trained on the even ones
    main(a.model, None if a.images is None else held_out.get(a.images) or [int(i) for i in a.images.split(',')], [float(s) for s in a.scales.split(',')],
         [float(t) for t in a.thresholds.split(',')] if a.thresholds else None, a.tta, not a.no_classical, a.threads, a.profile, a.blur_study, a.figure)
