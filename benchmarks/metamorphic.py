"""Metamorphic checks on every real micrograph we have: rotated, flipped, blurred, JPEG, gamma-changed and cropped
copies must give the same particles (`hrtem_np.consistency.consistency_check`; tolerances COUNT_TOL_PCT = 5 %,
MEAN_DIAMETER_TOL_NM = 0.05 nm).

    python benchmarks/metamorphic.py [--quick] [--only vendor|seg_track] [--part I/N] [--model PATH] [--tta] [--csv FILE]
    python benchmarks/metamorphic.py --from-csv part1.csv part2.csv …   # the tables of earlier runs, together

Inputs, relative to the repository (../shared/data beside it):
- ../shared/data/vendor: the files MANIFEST.csv lists as loadable single 2-D images ('load…' in its `expected`
  column) with nm_per_px <= 0.25 (HRTEM-like; the others are 0.38–260 000 nm/px, far outside the model's
  0.02–0.1 nm/px range). Every file left out is printed with the reason.
- ../shared/data/real/seg_track/images: the 20 bright-field TEM images, at an ASSUMED 0.05 nm/px (their pixel size
  is not recorded; the README there judges 0.04–0.08 nm/px plausible from the particle sizes).

Prints one table (file × variant: particles original → changed, mean-diameter change in nm, ✗ where a tolerance
fails) and the summary per variant (`summarize_consistency`). `run()` is importable
(`from metamorphic import run`, with benchmarks/ on sys.path) and returns the long table, one row per file and variant.
Analyses use the default options of `hrtem_np.batch.analyze` (edge particles excluded, plain prediction without
test-time augmentation unless --tta). Run with OMP_NUM_THREADS=1; the full run takes about 5 minutes on one core.
"""
import argparse, csv, os, subprocess, sys, time
from pathlib import Path
import numpy as np, pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent/'shared'/'data'
VENDOR = DATA/'vendor'
SEG_TRACK = DATA/'real'/'seg_track'/'images'
SEG_TRACK_NM_PER_PX = 0.05  # assumed pixel size of the seg_track images, nm (not recorded by their authors)
MAX_NM_PER_PX = 0.25  # vendor files with larger pixels are not HRTEM-like and are skipped, nm


def vendor_files(folder=VENDOR)->tuple:
    "([(path, None)] to check, [(file, reason)] skipped) from MANIFEST.csv."
    if not (folder/'MANIFEST.csv').exists(): return [], [(str(folder), 'no MANIFEST.csv: shared data checkout absent')]
    use, skipped = [], []
    for row in csv.DictReader(open(folder/'MANIFEST.csv')):
        exp, shape = row['expected'], row['shape'].split()[0].split('x')
        if not exp.startswith('load'): skipped.append((row['file'], f"not a loadable 2-D image (expected: {exp.split(':')[0]})"))
        elif len(shape) != 2: skipped.append((row['file'], f"{row['shape']}: not a single 2-D image"))
        elif float(row['nm_per_px']) > MAX_NM_PER_PX:
            skipped.append((row['file'], f"{float(row['nm_per_px']):.3g} nm/px > {MAX_NM_PER_PX} (not HRTEM-like)"))
        else: use.append((folder/row['file'], None))
    return use, skipped


def seg_track_files(folder=SEG_TRACK)->list:
    "[(path, SEG_TRACK_NM_PER_PX)] for the seg_track images, in numeric order."
    return [(p, SEG_TRACK_NM_PER_PX) for p in sorted(folder.glob('image_*.png'), key=lambda p: int(p.stem.split('_')[1]))]


def _name(x)->str:
    "Short name of a path or Micrograph for the tables."
    src = getattr(x, 'source', x)
    if src is None: return 'array'
    p = Path(src)
    for root in (VENDOR, DATA/'real'):
        try: return p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError: pass
    return p.name


def run(paths_or_micrographs, # paths, Micrographs, or (path or Micrograph, nm_per_px) pairs
        model=None, # None (shipped U-Net), 'classical', a model path, or a Segmenter (loaded once)
        variants=None, # `Variant`s to check; None = hrtem_np.consistency.VARIANTS
        verbose:bool=True, # print one line per file as it is checked
        **options, # hrtem_np.batch.analyze options, the same for every file and variant (tta, edge, …)
       )->pd.DataFrame:
    "One row per file and variant: `consistency_check`'s columns plus file, nm_per_px, seconds (errors as a row with `error`)."
    from hrtem_np.consistency import consistency_check
    from hrtem_np.segment import Segmenter, load_model
    if not (isinstance(model, Segmenter) or (isinstance(model, str) and model == 'classical')): model = load_model(model)
    out = []
    for item in paths_or_micrographs:
        x, s = item if isinstance(item, tuple) else (item, None)
        name, t0 = _name(x), time.perf_counter()
        try: r = consistency_check(x, model=model, variants=variants, nm_per_px=s, **options)
        except Exception as e:   # a file that cannot be read or analysed is reported, not fatal
            r = pd.DataFrame([dict(error=f"{type(e).__name__}: {e}")])
        dt = time.perf_counter() - t0
        r.insert(0, 'file', name); r.insert(1, 'nm_per_px', s if s is not None else getattr(x, 'nm_per_px', np.nan)); r['seconds'] = dt
        out.append(r)
        if verbose:
            msg = r['error'].iloc[0] if 'error' in r else f"{int(r.passed.sum())}/{len(r)} passed, n = {int(r.n_original.iloc[0])}"
            print(f"  {name}: {msg} ({dt:.1f} s)", flush=True)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def file_table(checks:pd.DataFrame)->pd.DataFrame:
    "file × variant: 'n_original→n_variant Δmean_nm', with ✗ after a failed tolerance."
    ok = checks[checks['error'].isna()] if 'error' in checks else checks
    ok = ok.astype({'n_original': int, 'n_variant': int, 'passed': bool})
    def cell(r):
        d = '' if not np.isfinite(r.mean_diameter_change_nm) else f" {r.mean_diameter_change_nm:+.3f}"
        return f"{r.n_original}→{r.n_variant}{d}" + ('' if r.passed else ' ✗')
    t = ok.assign(cell=ok.apply(cell, axis=1)).pivot(index='file', columns='variant', values='cell')
    return t[list(dict.fromkeys(ok.variant))].loc[list(dict.fromkeys(ok.file))]


def _commit()->str:
    try: return subprocess.run(['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()
    except OSError: return '?'


def report(checks:pd.DataFrame):
    "Print the file × variant table, any errors, and the summaries (vendor, seg_track, all)."
    from hrtem_np.consistency import summarize_consistency
    with pd.option_context('display.width', 250, 'display.max_columns', 30, 'display.max_rows', 500):
        print("\nparticles original → changed, mean-diameter change (nm), ✗ = outside a tolerance:")
        print(file_table(checks).to_string())
        errors = checks[checks['error'].notna()] if 'error' in checks else checks.iloc[:0]
        for _, r in errors.iterrows(): print(f"ERROR {r.file}: {r.error}")
        good = checks.drop(index=errors.index).astype({'n_original': int, 'n_variant': int, 'count_ok': bool,
                                                        'diameter_ok': bool, 'passed': bool})
        is_seg = good.file.str.startswith('seg_track')
        for label, part in (('vendor', good[~is_seg]), ('seg_track', good[is_seg]), ('all', good)):
            if len(part) == 0 or (label == 'all' and is_seg.all() | (~is_seg).all()): continue
            print(f"\nsummary, {label} ({part.file.nunique()} micrographs):")
            print(summarize_consistency(part).round(3).to_string(index=False))


def figure(checks:pd.DataFrame, items, path, model=None, n_cols=4, max_seg_track=3):
    "One panel per vendor file (and the first `max_seg_track` seg_track images): the model's outlines on the original and ✓/✗ per change."
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    from hrtem_np.batch import analyze
    from hrtem_np.io import load_micrograph
    from hrtem_np.plots import plot_overlay
    seg = [it for it in items if _name(it[0]).startswith('seg_track')][:max_seg_track]
    items = [it for it in items if not _name(it[0]).startswith('seg_track')] + seg
    n_rows = -(-len(items)//n_cols)
    fig, axs = plt.subplots(n_rows, n_cols, figsize=(3.1*n_cols, 3.4*n_rows), dpi=80, squeeze=False)
    short = {'rot90': 'rot', 'flip': 'flip', 'blur1px': 'blur', 'jpeg75': 'jpg', 'gamma0.7': 'γ.7', 'gamma1.4': 'γ1.4', 'crop75': 'crop'}
    for ax, (x, s) in zip(axs.ravel(), items):
        name = _name(x)
        m = load_micrograph(x, nm_per_px=s)
        a = analyze(m, model=model)
        plot_overlay(m, a.labels, a.particles, ax=ax, linewidth=0.8)
        r = checks[checks.file == name]
        marks = ' '.join(f"{short.get(v, v)}{'✓' if ok else '✗'}" for v, ok in zip(r.variant, r.passed)) if 'passed' in r else ''
        ax.set_title(f"{name[-28:]}\n{len(a.particles)} particles{' (assumed %g nm/px)' % s if s else ''}\n{marks}", fontsize=7)
        ax.axis('off')
    for ax in axs.ravel()[len(items):]: ax.axis('off')
    fig.tight_layout(); fig.savefig(path); plt.close(fig)
    print(f"figure: {path}")


def main(quick=False, only=None, part=None, model=None, tta=False, csv_out=None, figure_out=None):
    import torch; torch.set_num_threads(1)
    from hrtem_np.consistency import COUNT_TOL_PCT, MEAN_DIAMETER_TOL_NM
    vend, skipped = vendor_files()
    seg = seg_track_files()
    if quick: vend, seg = vend[:2], seg[:2]
    items = (vend if only in (None, 'vendor') else []) + (seg if only in (None, 'seg_track') else [])
    if part:
        i, n = map(int, part.split('/'))
        items = items[i - 1::n]
    print(f"metamorphic checks, {time.strftime('%Y-%m-%d')}, commit {_commit()}, model {model or 'shipped'}"
          f"{', tta' if tta else ''}; tolerances: count ±{COUNT_TOL_PCT:g} %, mean diameter ±{MEAN_DIAMETER_TOL_NM:g} nm")
    print(f"vendor files skipped ({len(skipped)}):")
    for f, why in skipped: print(f"  {f}: {why}")
    print(f"checking {len(items)} micrographs{f' (part {part})' if part else ''} "
          f"(seg_track at an assumed {SEG_TRACK_NM_PER_PX} nm/px):", flush=True)
    t0 = time.perf_counter()
    checks = run(items, model=model, tta=tta)
    if csv_out: checks.to_csv(csv_out, index=False)
    report(checks)
    if figure_out: figure(checks, items, figure_out, model=model)
    print(f"\n{time.perf_counter() - t0:.0f} s")
    return checks


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='two vendor files and two seg_track images')
    ap.add_argument('--only', choices=['vendor', 'seg_track'], help='check one set only')
    ap.add_argument('--model', default=None, help="model path, or 'classical'; default: the shipped model")
    ap.add_argument('--tta', action='store_true', help='test-time augmentation in every analysis (8× slower)')
    ap.add_argument('--part', default=None, help="I/N: check every N-th micrograph starting at the I-th (split a long run)")
    ap.add_argument('--csv', default=None, help='also write the long table (file × variant rows) here')
    ap.add_argument('--figure', default=None, help='also draw the outlines on each vendor file and 3 seg_track images, with ✓/✗ per change (PNG)')
    ap.add_argument('--from-csv', nargs='+', default=None, help='print the tables of earlier --csv runs together, check nothing')
    a = ap.parse_args()
    if a.from_csv: report(pd.concat([pd.read_csv(f) for f in a.from_csv], ignore_index=True))
    else: main(a.quick, a.only, a.part, a.model, a.tta, a.csv, a.figure)
