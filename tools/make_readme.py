"""Write README.md from nbs/index.ipynb without quarto (nbdev_readme needs quarto, which cannot be installed offline).

Markdown cells are copied; code cells without `#| hide` become ```python blocks, with their text outputs below.
Relative image links are rewritten from nbs/ to the repo root. Usage: python tools/make_readme.py [--check]
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def _directives(src):
    return {l[3:].strip().split()[0] for l in src.splitlines() if l.startswith('#|') and l[3:].strip()}

def _strip(src):
    return '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip('\n')

def _fix_links(md):
    "Images/links relative to nbs/ become relative to the repo root."
    return re.sub(r'(\]\()(?!https?:|#|/)([^)]+)\)', lambda m: f"{m.group(1)}nbs/{m.group(2)})", md)

def render(nb_path=ROOT/'nbs'/'index.ipynb'):
    nb = json.loads(Path(nb_path).read_text(encoding='utf-8'))
    parts = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown': parts.append(_fix_links(src.strip('\n')))
        elif c['cell_type'] == 'code':
            if {'hide', 'export', 'exporti', 'default_exp'} & _directives(src): continue
            code = _strip(src)
            if code: parts.append(f"```python\n{code}\n```")
            for o in c.get('outputs', []):
                txt = o.get('text') or o.get('data', {}).get('text/plain')
                if txt: parts.append("```\n" + ''.join(txt).rstrip('\n') + "\n```")
    head = "<!-- Generated from nbs/index.ipynb by tools/make_readme.py (./run readme); edit the notebook, not this file. -->\n\n"
    return head + '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    out = ROOT/'README.md'
    text = render()
    if '--check' in sys.argv:
        if out.read_text(encoding='utf-8') != text: sys.exit("README.md is out of date with nbs/index.ipynb: run ./run readme")
        print("README.md is current")
    else:
        out.write_text(text, encoding='utf-8'); print(f"wrote {out}")
