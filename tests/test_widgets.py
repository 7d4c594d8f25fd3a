"Review of analyze_folder results on real files, the clickable (ipympl) micrograph, and a clean committed notebook."
import hashlib, json, os, subprocess, sys, warnings
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.draw import disk
from hrtem_np.io import Micrograph, save_micrograph
from hrtem_np.batch import analyze, analyze_folder
from hrtem_np.widgets import Reviewer, review
from hrtem_np.corrections import apply_corrections_file, load_corrections, CorrectionsMismatch, CORRECTIONS_FILE, labels_sha256

NM_PER_PX = 0.1
ROOT = Path(__file__).parents[1]


def _image(centres_radii, shape=(96, 96), seed=0):
    "Dark disks on a noisy grey background (bright-field contrast)."
    img = 1.0 + 0.03*np.random.default_rng(seed).standard_normal(shape)
    for c, r in centres_radii: img[disk(c, r, shape=shape)] -= 0.6
    return img.astype(np.float32)


@pytest.fixture(scope='module')
def batch(tmp_path_factory):
    "Two calibrated TIFFs (one with a touching pair and an edge disk) analysed by analyze_folder (classical model)."
    tmp = tmp_path_factory.mktemp('review')
    src = tmp/'micrographs'; src.mkdir()
    save_micrograph(Micrograph(_image([((30, 30), 9), ((30, 47), 8), ((70, 60), 8), ((60, 2), 7)]), NM_PER_PX), src/'a.tif')
    save_micrograph(Micrograph(_image([((40, 40), 10), ((70, 20), 6)], seed=1), NM_PER_PX), src/'b.tif')
    res = analyze_folder(src, tmp/'out', model='classical', progress=False, overlays=False)
    assert res.n_ok == 2
    return src, tmp/'out', res


def _digest(folder:Path)->dict:
    "SHA-256 of every file under a folder except corrections files."
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob('*')) if p.is_file() and not p.name.startswith('corrections')}


def test_folder_review_round_trip(batch):
    "Review a batch folder, save, and re-apply the saved file to a fresh analysis of the same file: same table."
    src, out, res = batch
    before = _digest(out)
    rv = Reviewer(res)                                                      # a BatchResult works like its out_dir
    assert rv.names == ['a.tif', 'b.tif']
    t0 = rv.current_table()
    run = pd.read_csv(out/'images'/'a'/'particles.csv').drop(columns='image')
    assert t0['diameter_nm'].round(9).tolist() == run['diameter_nm'].round(9).tolist()
    pair = t0.loc[t0['was_split'], 'label'].tolist()
    assert len(pair) == 2                                                  # the touching pair was split by the run
    rv.select_particle(pair[0])
    merged = rv.merge()                                                    # its one neighbour
    row = rv.current_table().set_index('label').loc[merged]
    assert abs(row['area_nm2'] - t0.set_index('label').loc[pair, 'area_nm2'].sum()) < 1e-9   # the union of the pixels
    assert abs(row['diameter_nm'] - 2*np.sqrt(row['area_nm2']/np.pi)) < 1e-9
    assert (rv.current_labels() == merged).sum()*NM_PER_PX**2 == pytest.approx(row['area_nm2'])
    assert not row['was_split']
    single = int(rv.current_table().query('not was_split and label != @merged')['label'].iloc[0])
    rv.exclude(single)
    if (out/'images'/'a'/'mask.tif').exists():                              # the batch kept the mask: the edge disk is back
        status = rv.state.status()
        assert (status == 'at edge').sum() == 1
        rv.set_filters(edge='keep')
        assert len(rv.current_table()) == len(t0) - 1                       # 2 merged into 1, 1 excluded, the edge disk added
        assert rv.current_table()['touches_edge'].sum() == 1
    f = rv.save()
    assert f == out/'images'/'a'/CORRECTIONS_FILE
    assert _digest(out) == before                                           # the results were not touched
    c = load_corrections(f)
    assert c.edits == [{'merge': sorted(pair), 'into': merged}] and c.exclude == [single]
    assert c.mask_sha256 == (labels_sha256(tifffile.imread(out/'images'/'a'/'mask.tif') > 0)
                             if (out/'images'/'a'/'mask.tif').exists() else None)
    a = analyze(src/'a.tif', model='classical')                             # what a re-run computes
    r = apply_corrections_file(out/'images'/'a', a.labels, a.particles, a.micrograph, a.mask)
    assert r.applied and 'merge' in r.note
    pd.testing.assert_frame_equal(r.particles, rv.current_table())
    assert np.array_equal(r.labels, rv.current_labels())
    rv2 = review(out).reviewer                                              # a new session continues the review
    pd.testing.assert_frame_equal(rv2.current_table(), rv.current_table())
    assert rv2.notes[0].startswith('loaded corrections.json')
    rv2.select_image('b.tif')
    assert rv2.notes[1] == '' and len(rv2.current_table()) == 2


def test_stale_corrections_reported(batch):
    "Corrections from another run are reported, not applied, and not silently overwritten."
    src, out, _ = batch
    f = out/'images'/'b'/CORRECTIONS_FILE
    rv = Reviewer(out); rv.select_image('b.tif')
    rv.exclude(int(rv.current_table()['label'].iloc[0])); rv.save()
    other = analyze(src/'b.tif', model='classical', min_diameter_nm=1.5)   # other options → other labels
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        r = apply_corrections_file(f, other.labels, other.particles, other.micrograph, other.mask)
    assert not r.applied and r.particles is other.particles and any('not the one' in str(x.message) for x in w)
    with pytest.raises(CorrectionsMismatch, match='label image'):
        apply_corrections_file(f, other.labels, other.particles, other.micrograph, other.mask, strict=True)
    d = out/'images'/'b'
    kept = {n: (d/n).read_bytes() for n in ('labels.tif', 'particles.csv', CORRECTIONS_FILE)}
    try:                                                                   # the results replaced by another run's
        save_micrograph(Micrograph(other.labels.astype(np.uint16), NM_PER_PX), d/'labels.tif', overwrite=True, dtype=np.uint16)
        other.particles.assign(image='b.tif').to_csv(d/'particles.csv', index=False)
        rv3 = Reviewer(out); rv3.select_image('b.tif')
        assert 'was NOT loaded' in rv3.notes[1] and rv3.corrections.exclude == []
        with pytest.raises(FileExistsError, match='never overwrites'): rv3.save()
        assert load_corrections(f).exclude == rv.corrections.exclude          # the old file is still there
        assert rv3.save(overwrite=True) == f
    finally:
        for n, b in kept.items(): (d/n).write_bytes(b)


def test_app_on_folder(batch):
    "The app switches images through its selector and saves through its button."
    _, out, _ = batch
    app = review(out)
    app.image_select.value = 1
    assert app.reviewer.index == 1 and app.reviewer.names[1] == 'b.tif'
    assert len(app.particle_list.options) == len(app.reviewer.state.table)
    app.particle_list.value = app.particle_list.options[0][1]
    app.include_button.click()
    assert app.reviewer.corrections.include == [app.particle_list.options[0][1]]
    app.overwrite.value = True
    app.save_button.click()
    assert app.message.value.startswith('saved') and load_corrections(out/'images'/'b').include == app.reviewer.corrections.include


@pytest.mark.skipif(not __import__('importlib').util.find_spec('ipympl'), reason='ipympl (optional) is not installed')
def test_click_selects_with_ipympl():
    "With the ipympl backend a real mouse click on the micrograph selects the particle under it."
    code = '''
import matplotlib; matplotlib.use('module://ipympl.backend_nbagg')
import numpy as np
from types import SimpleNamespace
from matplotlib.backend_bases import MouseEvent
from skimage.draw import disk
from hrtem_np.io import Micrograph
from hrtem_np.particles import particles_from_mask
from hrtem_np.widgets import review
mask = np.zeros((64, 64), bool); mask[disk((20, 20), 6)] = True; mask[disk((44, 40), 8)] = True
img = np.where(mask, 0.5, 1.0).astype(np.float32) + 0.01*np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
m = Micrograph(img, 0.1)
labels, table = particles_from_mask(mask, 0.1, image=m)
app = review(SimpleNamespace(micrograph=m, labels=labels, particles=table))
assert app.interactive
for (row, col), want in (((44, 40), int(labels[44, 40])), ((20, 20), int(labels[20, 20])), ((60, 5), None)):
    app.fig.canvas.draw()                                   # the micrograph is redrawn after every click
    x, y = app.fig.axes[0].transData.transform((col, row))
    app.fig.canvas.callbacks.process('button_press_event', MouseEvent('button_press_event', app.fig.canvas, x, y, button=1))
    assert app.reviewer.selected == want, (row, col, app.reviewer.selected, want)
print('ok')
'''
    p = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert p.returncode == 0 and p.stdout.strip().endswith('ok'), p.stderr[-2000:]


def test_committed_notebook_has_no_widget_state():
    "The committed notebook carries no saved widget state and no widget views (its tables and figures are kept, issue 26)."
    nb = json.loads((ROOT/'nbs'/'09_widgets.ipynb').read_text())
    assert 'widgets' not in nb.get('metadata', {})
    assert not any('application/vnd.jupyter.widget-view+json' in o.get('data', {})
                   for c in nb['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', []))
    assert (ROOT/'nbs'/'09_widgets.ipynb').stat().st_size <= 300_000
    assert (ROOT/'nbs'/'images'/'review_widget.png').stat().st_size <= 120_000
