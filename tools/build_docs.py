"""Build the documentation site offline (no quarto): `./run docs [--no-exec] [--out _docs]`.

Each notebook in nbs/ (and nbs/tutorials/) is executed (cells flagged `slow` are skipped), its `#| hide` cells
dropped, each exported function or class shown as its API doc (signature + docments table, via nbdev's show_doc)
with the source folded, and rendered to HTML with nbconvert. `api.html` lists every public name of the package.
For anyone who has quarto, `nbdev_docs` still works from the same notebooks and settings.ini.
"""
import argparse, ast, copy, html, os, re, shutil, sys, time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.filters.markdown import markdown2html

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'

def _directives(src):
    return {l[3:].strip().split()[0]: l[3:].strip() for l in src.splitlines() if l.startswith('#|') and l[3:].strip()}

def _strip(src): return '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip('\n')

def _names(src):
    "Top-level functions and classes defined in a code cell."
    try: tree = ast.parse(_strip(src))
    except SyntaxError: return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith('_')]

def _source_url(url, obj):
    "nbdev's GitHub source link with the definition's line number (nbdev leaves '#LNone' when it cannot find it)."
    import inspect
    if not url.endswith('#LNone'): return url
    try: return url[:-len('None')] + str(inspect.getsourcelines(inspect.unwrap(obj))[1])
    except (TypeError, OSError): return url[:-len('#LNone')]

def _doc_md(obj):
    "show_doc's markdown (signature + docments table); its quarto-only link attributes become a plain HTML link."
    from nbdev.showdoc import BasicMarkdownRenderer
    md = BasicMarkdownRenderer(obj)._repr_markdown_()
    return re.sub(r'\[source\]\(([^)\s]*)\)\{target="_blank"[^}]*\}',
                  lambda m: f'<a href="{html.escape(_source_url(m.group(1), obj))}" target="_blank" '
                            'style="float:right; font-size:smaller">source</a>', md)

def _skip(c):
    "Code cells `nbdev_test` skips too: flagged slow, or `eval: false`."
    return c.cell_type == 'code' and ('slow' in _directives(c.source) or 'eval: false' in c.source)

def _output(o):
    "An execnb output as an nbformat node, its multi-line texts joined (as nbformat.read gives them)."
    o = nbformat.from_dict(o)
    if isinstance(o.get('text'), list): o['text'] = ''.join(o['text'])
    for k, v in o.get('data', {}).items():
        if isinstance(v, list): o['data'][k] = ''.join(v)
    return o

def _execute(nb, path):
    "Run the notebook's cells in its folder (slow cells skipped); outputs land in the cells. Returns the failing cells."
    from execnb.shell import CaptureShell
    shell = CaptureShell(path=path.parent)
    cwd, failed = os.getcwd(), []
    os.chdir(path.parent)
    try:
        for i, c in enumerate(nb.cells):
            if c.cell_type != 'code' or _skip(c): continue
            c.outputs = [_output(o) for o in shell.run(c.source)]
            if shell.exc is not None: failed.append(f"cell {i}: {type(shell.exc).__name__}: {shell.exc}"[:300])
    finally: os.chdir(cwd)
    return failed

def _module(nb):
    for c in nb.cells:
        d = _directives(c.source) if c.cell_type == 'code' else {}
        if 'default_exp' in d: return d['default_exp'].split()[-1]

def _transform(nb):
    "Hide hidden cells, turn exported definitions into API docs with folded source."
    import importlib
    mod = _module(nb); mod = importlib.import_module(f'hrtem_np.{mod}') if mod else None
    cells = []
    for c in nb.cells:
        if c.cell_type != 'code': cells.append(c); continue
        d = _directives(c.source)
        if 'hide' in d or 'default_exp' in d: continue
        if 'export' in d or 'exports' in d:
            for n in _names(c.source):
                if mod is not None and hasattr(mod, n): cells.append(nbformat.v4.new_markdown_cell(_doc_md(getattr(mod, n))))
            src = html.escape(_strip(c.source))
            src = re.sub(r'\n[ \t]*(?=\n)', '\n&#8203;', src)  # a blank line would end the HTML block: the code after it became markdown
            cells.append(nbformat.v4.new_markdown_cell(f"<details><summary>source</summary><pre><code>{src}</code></pre></details>"))
            continue
        c = copy.deepcopy(c); c.source = _strip(c.source)
        if c.source or c.get('outputs'): cells.append(c)
    nb.cells = cells
    return nb

def _title(nb, path):
    for c in nb.cells:
        if c.cell_type == 'markdown':
            m = re.search(r'^#\s+(.+)$', c.source, re.M)
            if m: return m.group(1).strip()
    return path.stem

NAV_CSS = """<style>
body{margin:0} #hnav{position:fixed;top:0;left:0;width:220px;height:100%;overflow:auto;background:#f6f7f9;
border-right:1px solid #ddd;font:14px/1.5 sans-serif;padding:12px} #hnav a{display:block;color:#234;text-decoration:none;padding:2px 0}
#hnav a.cur{font-weight:bold} #hbody{margin-left:250px;max-width:1000px;padding:0 16px}
</style>"""

def _rel(target, current):
    "Link from page `current` to page `target` (both relative to the site root, '/'-separated)."
    return os.path.relpath(target, os.path.dirname(current) or '.').replace(os.sep, '/')

_NB_LINK = re.compile(r'(href=")(?![a-z][a-z0-9+.-]*:|/|#)([^"]*?)\.ipynb((?:#[^"]*)?")')

def _page(body_html, pages, current):
    "The page with the navigation bar; links to other notebooks (x.ipynb) point to their pages (x.html)."
    links = ''.join(f'<a class="{"cur" if f == current else ""}" href="{_rel(f, current)}">{html.escape(t)}</a>' for f, t in pages)
    nav = f'<nav id="hnav"><b>hrtem_np</b><hr>{links}</nav>'
    body_html = _NB_LINK.sub(r'\1\2.html\3', body_html)
    body_html = body_html.replace('</head>', NAV_CSS + '</head>', 1)
    return re.sub(r'(<body[^>]*>)', r'\1' + nav + '<div id="hbody">', body_html, count=1).replace('</body>', '</div></body>', 1)

def _api_page():
    import importlib, pkgutil, hrtem_np
    md = ['# API reference', 'Every public function and class, with its parameters, units and defaults (from the docments).']
    for m in sorted(pkgutil.iter_modules(hrtem_np.__path__), key=lambda m: m.name):
        if m.name.startswith('_'): continue
        mod = importlib.import_module(f'hrtem_np.{m.name}')
        names = [n for n in getattr(mod, '__all__', []) if callable(getattr(mod, n, None))]
        if not names: continue
        md.append(f'## hrtem_np.{m.name}')
        md.extend(_doc_md(getattr(mod, n)) for n in names)
    return '\n\n'.join(md)

def _page_name(p):
    "Page of notebook `p`, mirroring nbs/: index.html, 00_io.html, tutorials/01_….html (as nbdev_docs/quarto lays them out)."
    return 'index.html' if p == NBS/'index.ipynb' else p.relative_to(NBS).with_suffix('.html').as_posix()

def build(out=ROOT/'_docs', execute=True):
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    paths = [NBS/'index.ipynb'] + sorted(p for p in NBS.glob('[0-9]*.ipynb')) + sorted(p for p in (NBS/'tutorials').glob('*.ipynb') if not p.name.startswith(('_', '.')))
    exporter = HTMLExporter(template_name='lab')
    nbs, pages, problems = [], [], {}
    for p in paths:
        nb = nbformat.read(p, as_version=4)
        fname = _page_name(p)
        nbs.append((p, nb, fname)); pages.append((fname, _title(nb, p)))
    pages.append(('api.html', 'API reference'))
    for p, nb, fname in nbs:
        t0 = time.time()
        if execute and p.stem != 'index':
            failed = _execute(nb, p)
            if failed: problems[fname] = failed
        body, _ = exporter.from_notebook_node(_transform(nb))
        (out/fname).parent.mkdir(parents=True, exist_ok=True)
        (out/fname).write_text(_page(body, pages, fname), encoding='utf-8')
        print(f"{fname:45s} {time.time()-t0:6.1f} s" + (f"  {len(problems[fname])} cell(s) failed" if fname in problems else ''))
    api = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(_api_page())])
    (out/'api.html').write_text(_page(exporter.from_notebook_node(api)[0], pages, 'api.html'), encoding='utf-8')
    if (NBS/'images').exists(): shutil.copytree(NBS/'images', out/'images', dirs_exist_ok=True)
    for fname, failed in problems.items():
        print(f"WARNING {fname}: " + '; '.join(failed), file=sys.stderr)
    print(f"docs written to {out}/index.html")
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT/'_docs')); ap.add_argument('--no-exec', action='store_true')
    a = ap.parse_args()
    os.environ.setdefault('MPLBACKEND', 'Agg')
    build(a.out, execute=not a.no_exec)
