"""The accuracy figures the docs quote are the ones `benchmarks/robustness.py --record` wrote into the shipped model
card (`robustness` block), so a re-run of the bench that is not carried into README / index / 05_evaluate fails here.
The tables are written by `python benchmarks/robustness.py --table` from the card."""
import json, sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
CARD = json.loads((REPO/'hrtem_np'/'models'/'hrtem_unet.json').read_text())
ROB = CARD['robustness']
sys.path.insert(0, str(REPO/'benchmarks'))
from robustness import HEADLINE, markdown_table  # noqa: E402


def _text(nb):
    return '\n'.join(c.source for c in nbformat.read(REPO/'nbs'/nb, as_version=4).cells if c.cell_type == 'markdown')


def test_card_records_the_bench_run():
    assert ROB['commit'] and ROB['date'] and 'edge particles counted' in ROB['convention']
    assert set(HEADLINE) <= set(ROB['model']) and set(ROB['model']) == set(ROB['classical_baseline'])
    assert any(t.startswith(('PASS', 'FAIL')) for t in ROB['targets'])


def test_index_and_readme_quote_the_card():
    rows = markdown_table(ROB, HEADLINE).splitlines()[2:]
    for text in (_text('index.ipynb'), (REPO/'README.md').read_text(encoding='utf-8')):
        for row in rows: assert row in text, row
        assert f"commit {ROB['commit']}" in text


def test_evaluate_notebook_quotes_the_card():
    text = _text('05_evaluate.ipynb')
    for row in markdown_table(ROB).splitlines()[2:]: assert row in text, row
    for line in ROB['targets']: assert line in text, line
    assert f"commit {ROB['commit']}" in text
