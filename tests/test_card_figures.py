"""The accuracy figures the docs quote are the ones `benchmarks/accuracy.py --record` wrote into the shipped model card,
so a re-run of the benchmark that is not carried into README / index / 05_evaluate fails here."""
import json
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
EV = json.loads((REPO/'hrtem_np'/'models'/'hrtem_unet.json').read_text())['evaluation']


def _row(key):
    "How the index/README table writes the card's overall figures of `key`, with their 95 % intervals."
    m, ci = EV[key], EV['ci95'][key]
    cell = lambda s, unit='': f"{m[s]:.3f}{unit} ({ci[s][0]:.3f}–{ci[s][1]:.3f})"
    return f"| {cell('pixel_iou')} | {cell('object_f1')} | {cell('median_abs_diameter_error_nm', ' nm')} |"


def _text(nb):
    return '\n'.join(c.source for c in nbformat.read(REPO/'nbs'/nb, as_version=4).cells if c.cell_type == 'markdown')


def test_index_and_readme_quote_the_card():
    n = int(EV['benchmark'].split('--n ')[1].split()[0])
    for text in (_text('index.ipynb'), (REPO/'README.md').read_text(encoding='utf-8')):
        assert f"Accuracy on {n} held-out micrographs" in text
        for key in ('shipped_model', 'shipped_model_tta', 'classical_baseline'):
            assert _row(key) in text, (key, _row(key))
        assert f"takes {EV['segment_2048px_at_0.03nm_s']} s on one CPU" in text


def test_evaluate_notebook_quotes_the_card():
    text, m = _text('05_evaluate.ipynb'), EV['shipped_model']
    assert f"commit {EV['commit']}" in text
    assert f"| {m['pixel_iou']:.3f} | {m['pixel_dice']:.3f} | {m['object_precision']:.3f} | {m['object_recall']:.3f} | {m['object_f1']:.3f} |" in text
    for key, name in (('shipped_model', 'shipped model'), ('classical_baseline', 'classical')):
        e, ci = EV[key], EV['ci95'][key]
        assert f"| {name} | {e['pixel_iou']:.3f} ({ci['pixel_iou'][0]:.3f}–{ci['pixel_iou'][1]:.3f}) |" in text
    assert f"took {EV['segment_2048px_at_0.03nm_s']} s on one CPU" in text
