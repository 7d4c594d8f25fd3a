"""Re-run a notebook and keep the outputs of only the cells that show a result worth committing (a figure, a table).

    python tools/refresh_outputs.py nbs/05_evaluate.ipynb --keep "plot_overlay(au"
    python tools/refresh_outputs.py --all            # every notebook listed in tools/outputs.json (the one way; ./run outputs)

`tools/outputs.json` lists, per notebook, the cells to keep (`keep`: source substrings) and how many more to keep
automatically (`auto`: the first cells, after the kept ones, whose output is a table or a figure of at most 40 KB;
`figures`: at most this many figures in all, for the tutorials).

Every cell runs except those flagged `slow` (in the notebook's folder, as nbdev_test runs it); cells whose source
contains one of the `--keep` strings keep their outputs (warnings dropped, PNG figures palette-quantised), every
other cell is cleared, so the committed notebook stays small. The notebook is written atomically
(`hrtem_np.io.atomic_write`) and then cleaned with nbdev_clean.
"""
import argparse, json, os, subprocess, sys
from pathlib import Path

def _small(out, colours=96):
    "The output with its PNG figures palette-quantised (a grey micrograph with a few coloured outlines needs few colours)."
    import base64, io
    from PIL import Image
    if 'application/vnd.jupyter.widget-view+json' in out.get('data', {}):   # a live widget means nothing in a file: keep its text
        out['data'] = {k: v for k, v in out['data'].items() if k != 'application/vnd.jupyter.widget-view+json'}
    png = out.get('data', {}).get('image/png')
    if png:
        rgb = Image.open(io.BytesIO(base64.b64decode(png))).convert('RGB')
        for n, scale in ((colours, 1.0), (32, 1.0), (32, 0.75)):   # large figures: fewer colours, then 3/4 size
            im = rgb if scale == 1 else rgb.resize((int(rgb.width*scale), int(rgb.height*scale)), Image.LANCZOS)
            buf = io.BytesIO(); im.quantize(n).save(buf, 'PNG', optimize=True)
            if buf.tell() <= 100*1024: break
        out['data'] = dict(out['data'], **{'image/png': base64.b64encode(buf.getvalue()).decode()})
    return out

def _shows(outputs)->str:
    "'figure', 'table' or '' for what a cell's outputs show."
    for o in outputs:
        d = o.get('data', {})
        if 'image/png' in d: return 'figure'
        if 'text/html' in d or 'text/markdown' in d: return 'table'
    return ''

def refresh(path, keep, max_kb=300, auto=0, figures=99, flags=('shared',)):
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    path = Path(path).resolve()
    nb = read_nb(path)
    cwd = os.getcwd(); os.chdir(path.parent)
    slow = lambda c: c.cell_type == 'code' and any(l.replace(' ', '').startswith('#|slow') for l in c.source.splitlines())
    if 'shared' in flags and not (Path(__file__).resolve().parents[1].parent/'shared'/'data').exists(): flags = ()
    skip = lambda c: slow(c) or (c.cell_type == 'code' and 'shared' not in flags and
                                 any(l.replace(' ', '').startswith('#|shared') for l in c.source.splitlines()))
    try: CaptureShell().run_all(nb, exc_stop=True, preproc=skip)  # cells flagged slow are skipped, as nbdev_test does
    finally: os.chdir(cwd)
    raw = json.loads(path.read_text())
    cells = [(cell, [_small(dict(o)) for o in ran.get('outputs', []) if o.get('name') != 'stderr'])
             for cell, ran in zip(raw['cells'], nb.cells) if cell['cell_type'] == 'code']
    def kind(src, outs):
        k = _shows(outs)
        if k or src.lstrip().startswith('#| export'): return k
        return 'text' if any(o.get('output_type') in ('execute_result', 'stream') for o in outs) and len(json.dumps(outs)) <= 5*1024 else ''
    info = [(''.join(c['source']), outs) for c, outs in cells]
    named = [any(k in src for k in keep) for src, _ in info]
    n_fig = sum(1 for (src, outs), n in zip(info, named) if n and _shows(outs) == 'figure')
    chosen = list(named)
    for want in (('table', 'figure'), ('text',)):        # tables and figures first, then short text results
        for i, (src, outs) in enumerate(info):
            if sum(chosen) - sum(named) >= auto: break
            k = kind(src, outs)
            if chosen[i] or k not in want or len(json.dumps(outs)) > 40*1024: continue
            if k == 'figure' and n_fig >= figures: continue
            chosen[i] = True; n_fig += k == 'figure'
    kept = 0
    for (cell, outs), keep_it in zip(cells, chosen):
        cell['outputs'] = outs if keep_it else []; kept += keep_it
        cell['execution_count'] = None
    text = json.dumps(raw, indent=1, ensure_ascii=False) + '\n'
    if len(text) > max_kb*1024: sys.exit(f"{path}: {len(text)//1024} KB with the kept outputs, over {max_kb} KB; keep fewer")
    from hrtem_np.io import atomic_write
    atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite=True)
    subprocess.run([str(Path(sys.executable).parent/'nbdev_clean'), '--fname', str(path)], check=True)
    print(f"{path.name}: ran every cell, kept the outputs of {kept} cell(s), {len(text)//1024} KB")

CONFIG = Path(__file__).with_name('outputs.json')

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebook', nargs='?'); ap.add_argument('--keep', action='append', default=[], help='source substring of a cell to keep')
    ap.add_argument('--all', action='store_true', help='every notebook in tools/outputs.json')
    a = ap.parse_args()
    cfg = json.loads(CONFIG.read_text())
    root = CONFIG.resolve().parents[1]
    todo = list(cfg) if a.all else [str(Path(a.notebook).resolve().relative_to(root))] if a.notebook else ap.error('name a notebook or --all')
    for nb in todo:
        c = cfg.get(nb, {})
        refresh(root/nb, c.get('keep', []) + a.keep, auto=c.get('auto', 0), figures=c.get('figures', 99))
