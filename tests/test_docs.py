"""The offline docs site (`./run docs` → tools/build_docs.py): every notebook becomes a page, the API page carries
the docments, links between pages resolve, and the index shows the summary figure. Built once with `--no-exec`
(no notebook is run here; `nbdev_test` runs them)."""
import re, subprocess, sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NBS = REPO/'nbs'
sys.path.insert(0, str(REPO/'tools'))
import build_docs  # noqa: E402

TUTORIALS = ['01_analyse_a_folder', '02_fine_tune_on_your_labels', '03_compare_two_syntheses']


def _notebooks():
    "(notebook, page) for every notebook the site must show."
    nbs = [NBS/'index.ipynb'] + sorted(NBS.glob('[0-9]*.ipynb'))
    nbs += sorted(p for p in (NBS/'tutorials').glob('*.ipynb') if not p.name.startswith(('_', '.')))
    return [(p, 'index.html' if p.stem == 'index' else p.relative_to(NBS).with_suffix('.html').as_posix()) for p in nbs]


def _title(p):
    "The notebook's title: its first '# ' heading."
    for c in nbformat.read(p, as_version=4).cells:
        m = re.search(r'^#\s+(.+)$', c.source, re.M) if c.cell_type == 'markdown' else None
        if m: return m.group(1).strip()


class _Refs(HTMLParser):
    "Local href/src targets of a page."
    def __init__(self):
        super().__init__(); self.refs = []
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ('href', 'src') and v and (tag, k) in {('a', 'href'), ('img', 'src')}: self.refs.append(v)


def _local_refs(page: Path):
    p = _Refs(); p.feed(page.read_text(encoding='utf-8'))
    out = []
    for r in p.refs:
        u = urlsplit(r)
        if u.scheme or u.netloc or not u.path: continue   # external links, data: URIs, in-page anchors
        out.append(unquote(u.path))
    return out


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The site built by the README's command, without executing notebooks."
    out = tmp_path_factory.mktemp('docs')/'_docs'
    r = subprocess.run([sys.executable, str(REPO/'tools'/'build_docs.py'), '--no-exec', '--out', str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=900, env={'MPLBACKEND': 'Agg',
                       'OMP_NUM_THREADS': '1', **__import__('os').environ})
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_tutorials_exist():
    "The three tutorials of the manual, numbered in reading order."
    have = [p.stem for p in sorted((NBS/'tutorials').glob('[0-9]*.ipynb'))]
    assert have == TUTORIALS, have


def test_every_notebook_is_a_page(site):
    for nb, page in _notebooks():
        f = site/page
        assert f.exists(), f"{nb.name} has no page {page}"
        text = f.read_text(encoding='utf-8')
        title = _title(nb)
        assert title and title.split(':')[0] in text, f"{page} lacks its title {title!r}"
    for t in TUTORIALS: assert (site/'tutorials'/f'{t}.html').exists()


def test_navigation_lists_every_page(site):
    index = (site/'index.html').read_text(encoding='utf-8')
    nav = re.search(r'<nav id="hnav">(.*?)</nav>', index, re.S).group(1)
    for _, page in _notebooks(): assert f'href="{page}"' in nav, page
    assert 'href="api.html"' in nav
    tut = (site/'tutorials'/'01_analyse_a_folder.html').read_text(encoding='utf-8')
    assert 'href="../index.html"' in tut and 'href="../api.html"' in tut   # relative from the sub-folder


def test_api_page_has_docments(site):
    api = (site/'api.html').read_text(encoding='utf-8')
    m = re.search(r'<h3 id="load_micrograph">.*?</table>', api, re.S)
    assert m, "load_micrograph is not documented on api.html"
    sec = m.group(0)
    for param in ('path', 'nm_per_px', 'signal', 'frame'): assert f'<td>{param}</td>' in sec, param
    assert "overrides the file's calibration" in sec           # the docment of nm_per_px
    assert '{target=' not in api and '#LNone' not in api        # quarto-only markup does not leak into the page
    for name in ('simulate_micrograph', 'train_segmenter', 'analyze_folder', 'compare_samples', 'summary_figure'):
        assert f'id="{name}"' in api, name


def test_local_links_resolve(site):
    "Links between pages (x.ipynb in the notebooks → x.html on the site), the navigation and local images all exist."
    pending = {'images/demo_summary.png'} - {p.relative_to(NBS).as_posix() for p in NBS.glob('images/*')}
    for page in [p for _, p in _notebooks()] + ['api.html']:
        for ref in _local_refs(site/page):
            target = (site/page).parent/ref
            rel = target.resolve().relative_to(site.resolve()).as_posix() if target.resolve().is_relative_to(site.resolve()) else ref
            if rel in pending: continue   # produced by the demo; checked in test_index_shows_summary_figure
            assert target.exists(), f"{page}: broken link {ref}"
            assert not ref.endswith('.ipynb'), f"{page}: link to a notebook file {ref}"


def test_index_shows_summary_figure(site):
    index = (site/'index.html').read_text(encoding='utf-8')
    assert re.search(r'<img[^>]+src="images/demo_summary\.png"', index)
    src = NBS/'images'/'demo_summary.png'
    if not src.exists(): pytest.skip("nbs/images/demo_summary.png not made yet (the demo produces it); reference checked")
    assert (site/'images'/'demo_summary.png').read_bytes() == src.read_bytes()


def test_tutorials_stay_small():
    "Each tutorial keeps at most one figure output; images it shows from nbs/images exist and are ≤ 100 KB."
    for t in TUTORIALS:
        nb = NBS/'tutorials'/f'{t}.ipynb'
        md = '\n'.join(c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == 'markdown')
        for ref in re.findall(r'!\[[^\]]*\]\((?!https?:)([^)\s]+)', md):
            img = (nb.parent/ref).resolve()
            assert img.exists(), f"{nb.name} shows {ref}, which does not exist"
            assert img.stat().st_size <= 100_000, f"{ref} is {img.stat().st_size} bytes (> 100 KB)"
        assert nb.stat().st_size < 300_000, f"{nb.name} is too large"
        n_fig = sum('image/png' in o.get('data', {}) for c in nbformat.read(nb, as_version=4).cells
                    if c.cell_type == 'code' for o in c.get('outputs', []))
        assert n_fig <= 1, f"{nb.name} keeps {n_fig} figures"


def test_page_links_rewritten():
    pages = [('index.html', 'Home'), ('tutorials/01_a.html', 'One'), ('api.html', 'API')]
    body = ('<html><head></head><body><a href="02_b.ipynb#step-2">next</a> <a href="../index.ipynb">home</a> '
            '<a href="https://example.org/x.ipynb">ext</a></body></html>')
    out = build_docs._page(body, pages, 'tutorials/01_a.html')
    assert 'href="02_b.html#step-2"' in out and 'href="../index.html"' in out
    assert 'href="https://example.org/x.ipynb"' in out                        # external links untouched
    assert '<a class="cur" href="01_a.html">One</a>' in out and 'href="../api.html"' in out


def test_execute_skips_slow_and_reports_failures(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 6*7\nx"),
        nbformat.v4.new_code_cell("#| slow\nraise RuntimeError('slow cells must not run')"),
        nbformat.v4.new_code_cell("from pathlib import Path\nPath('here.txt').write_text('cwd'); print('ok')"),
        nbformat.v4.new_code_cell("1/0")])
    p = tmp_path/'t.ipynb'; nbformat.write(nb, p)
    failed = build_docs._execute(nb, p)
    assert nb.cells[0].outputs[0]['data']['text/plain'] == '42'
    assert nb.cells[1].get('outputs', []) == []
    assert (tmp_path/'here.txt').exists()                                     # cells run in the notebook's folder
    assert len(failed) == 1 and 'ZeroDivisionError' in failed[0] and failed[0].startswith('cell 3')


def test_nbdev_finds_the_tutorials():
    "nbdev_test and nbdev_docs (quarto) see the tutorials: nbs/ is searched recursively."
    from nbdev.config import get_config
    from nbdev.doclinks import nbglob
    cfg = get_config(path=REPO)
    assert str(cfg.recursive).lower() == 'true' and 'slow' in cfg.tst_flags
    found = {Path(f).relative_to(NBS).as_posix() for f in nbglob(NBS)}   # recursive as settings.ini says
    assert {f'tutorials/{t}.ipynb' for t in TUTORIALS} <= found
