"""Re-run a notebook and keep the outputs of only the cells that show a result worth committing (a figure, a table).

    python tools/refresh_outputs.py nbs/05_evaluate.ipynb --keep "plot_overlay(au"

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
    png = out.get('data', {}).get('image/png')
    if png:
        im = Image.open(io.BytesIO(base64.b64decode(png))).convert('RGB').quantize(colours)
        buf = io.BytesIO(); im.save(buf, 'PNG', optimize=True)
        out['data'] = dict(out['data'], **{'image/png': base64.b64encode(buf.getvalue()).decode()})
    return out

def refresh(path, keep, max_kb=300):
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    path = Path(path).resolve()
    nb = read_nb(path)
    cwd = os.getcwd(); os.chdir(path.parent)
    slow = lambda c: c.cell_type == 'code' and any(l.replace(' ', '').startswith('#|slow') for l in c.source.splitlines())
    try: CaptureShell().run_all(nb, exc_stop=True, preproc=slow)  # cells flagged slow are skipped, as nbdev_test does
    finally: os.chdir(cwd)
    raw = json.loads(path.read_text())
    kept = 0
    for cell, ran in zip(raw['cells'], nb.cells):
        if cell['cell_type'] != 'code': continue
        if any(k in ''.join(cell['source']) for k in keep):
            cell['outputs'] = [_small(dict(o)) for o in ran.get('outputs', []) if o.get('name') != 'stderr']; kept += 1
        else: cell['outputs'] = []
        cell['execution_count'] = None
    text = json.dumps(raw, indent=1, ensure_ascii=False) + '\n'
    if len(text) > max_kb*1024: sys.exit(f"{path}: {len(text)//1024} KB with the kept outputs, over {max_kb} KB; keep fewer")
    from hrtem_np.io import atomic_write
    atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite=True)
    subprocess.run([str(Path(sys.executable).parent/'nbdev_clean'), '--fname', str(path)], check=True)
    print(f"{path.name}: ran every cell, kept the outputs of {kept} cell(s), {len(text)//1024} KB")

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebook'); ap.add_argument('--keep', action='append', default=[], help='source substring of a cell to keep')
    a = ap.parse_args()
    refresh(a.notebook, a.keep)
