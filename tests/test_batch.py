"Batch analysis on folders with good and bad files: results, failure rows, no overwriting, resume, provenance, Dask."
import hashlib, json, os, shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.draw import disk

from hrtem_np.io import Micrograph, save_micrograph
from hrtem_np.batch import analyze, analyze_folder, BatchError
from hrtem_np.io import file_sha256

NM_PER_PX = 0.1   # disks of radius 10 px → diameter 2.0 nm
D_TRUE_NM = 2.0
D_TOL_NM = 0.15   # about one pixel and a half: classical blur + threshold on a rasterised disk
GOOD = {'a.tif': [(40, 40), (90, 80)], 'b.tif': [(30, 90), (80, 30), (95, 95)]}
FAST = dict(model='classical', progress=False, overlays=False)


def _disks(centres, r_px=10, shape=(128, 128), seed=0):
    "Dark disks (bright-field particles) of radius r_px on a noisy background, float32."
    rng = np.random.default_rng(seed)
    img = 1.0 + 0.05*rng.standard_normal(shape)
    for c in centres: img[disk(c, r_px, shape=shape)] -= 0.6
    return img.astype(np.float32)


def _sha(p): return hashlib.sha256(Path(p).read_bytes()).hexdigest()


@pytest.fixture
def folder(tmp_path):
    "Two good calibrated TIFFs, a corrupt .dm3, an uncalibrated PNG, an empty .tif and a text note."
    f = tmp_path/'synthesis_A'; f.mkdir()
    for i, (name, cs) in enumerate(GOOD.items()):
        save_micrograph(Micrograph(_disks(cs, seed=i), NM_PER_PX), f/name)
    (f/'corrupt.dm3').write_bytes(b'\x00\x00\x00\x03' + bytes(range(256))*4)
    Image.fromarray((_disks([(64, 64)])*200).clip(0, 255).astype(np.uint8)).save(f/'uncalibrated.png')
    (f/'empty.tif').write_bytes(b'')
    (f/'notes.txt').write_text('Au, citrate reduction, 200 kV')
    return f


def _files(d):
    "{relative path: (mtime_ns, bytes)} of every file under d."
    return {p.relative_to(d).as_posix(): (p.stat().st_mtime_ns, p.read_bytes()) for p in d.rglob('*') if p.is_file()}


def test_good_and_bad_files(folder, tmp_path):
    out = tmp_path/'out'
    with pytest.warns(UserWarning, match='3 of 6 inputs failed'):
        res = analyze_folder(folder, out, **FAST)
    im = res.images.set_index('image')
    assert sorted(im.index) == ['a.tif', 'b.tif', 'corrupt.dm3', 'empty.tif', 'notes.txt', 'uncalibrated.png']
    # the good ones: every disk found once, with its diameter
    assert im.loc['a.tif', 'status'] == 'ok' and im.loc['b.tif', 'status'] == 'ok'
    assert (im.loc['a.tif', 'n_particles'], im.loc['b.tif', 'n_particles']) == (2, 3)
    assert im.loc['a.tif', 'nm_per_px'] == pytest.approx(NM_PER_PX) and im.loc['a.tif', 'calibration_source'] == 'metadata'
    assert np.allclose(res.particles['diameter_nm'], D_TRUE_NM, atol=D_TOL_NM)
    assert res.particles.groupby('image').size().to_dict() == {'a.tif': 2, 'b.tif': 3}
    # one failed row per bad file, with its reason
    assert (res.n_ok, res.n_failed, res.n_skipped) == (2, 3, 1)
    assert 'could not be read' in im.loc['corrupt.dm3', 'error']
    assert 'nm_per_px' in im.loc['uncalibrated.png', 'error'] and 'CalibrationError' in im.loc['uncalibrated.png', 'error']
    assert 'empty' in im.loc['empty.tif', 'error']
    assert im.loc['notes.txt', 'status'] == 'skipped' and 'not a micrograph' in im.loc['notes.txt', 'note']
    assert 'FAILED corrupt.dm3' in res.summary()
    # the tables on disk equal the returned ones
    disk_p = pd.read_csv(out/'particles.csv')
    assert list(disk_p['image']) == list(res.particles['image'])
    assert np.allclose(disk_p['diameter_nm'], res.particles['diameter_nm'])
    disk_i = pd.read_csv(out/'images.csv')
    assert list(disk_i['status']) == list(res.images['status'])
    assert {'load_s', 'segment_s', 'measure_s', 'total_s', 'sha256', 'error'} <= set(disk_i.columns)
    xl = pd.read_excel(out/'summary.xlsx', sheet_name=None)
    assert set(xl) == {'particles', 'images', 'statistics', 'dropped', 'provenance'}
    assert len(xl['particles']) == 5
    stats = xl['statistics'].set_index('image')
    assert stats.loc['pooled', 'n'] == 5 and stats.loc['pooled', 'mean'] == pytest.approx(D_TRUE_NM, abs=D_TOL_NM)
    for f in ('images/a/labels.tif', 'images/a/particles.csv', 'images/a/result.json', 'summary.png', 'provenance.json'):
        assert (out/f).exists(), f
    assert not (out/'images/a/overlay.png').exists()  # overlays=False


def test_label_images_match_tables(folder, tmp_path):
    import tifffile
    res = analyze_folder(folder/'b.tif', tmp_path/'out', model='classical', progress=False)
    lab = tifffile.imread(tmp_path/'out/images/b/labels.tif')
    assert sorted(np.unique(lab[lab > 0])) == sorted(res.particles['label'])
    mask = tifffile.imread(tmp_path/'out/images/b/mask.tif')
    assert mask.dtype == np.uint8 and ((lab > 0) <= (mask > 0)).all()  # every labelled pixel is in the mask
    area_nm2 = np.bincount(lab.ravel())[1:]*NM_PER_PX**2
    assert np.allclose(area_nm2, res.particles.sort_values('label')['area_nm2'])
    assert (tmp_path/'out/images/b/overlay.png').stat().st_size > 1000


def test_all_failed_still_writes_images_csv(folder, tmp_path):
    with pytest.raises(BatchError, match='FAILED empty.tif'):
        analyze_folder([folder/'empty.tif', folder/'corrupt.dm3'], tmp_path/'out', raise_on_failure=True, **FAST)
    im = pd.read_csv(tmp_path/'out/images.csv')
    assert list(im['status']) == ['failed', 'failed'] and im['error'].str.len().min() > 20
    parts = pd.read_csv(tmp_path/'out/particles.csv')
    assert len(parts) == 0 and {'image', 'label', 'diameter_nm'} <= set(parts.columns)


def test_image_without_particles(tmp_path):
    ramp = np.add.outer(np.linspace(0, 1, 128), np.zeros(128)).astype(np.float32)  # thickness gradient, no particle
    save_micrograph(Micrograph(ramp, NM_PER_PX), tmp_path/'carbon_only.tif')  # (its dark half touches the edge: excluded)
    res = analyze_folder(tmp_path/'carbon_only.tif', tmp_path/'out', **FAST)
    assert (res.images['status'][0], res.images['n_particles'][0]) == ('ok', 0)
    assert len(res.particles) == 0 and 'diameter_nm' in res.particles.columns
    assert 'no statistics' in pd.read_excel(tmp_path/'out/summary.xlsx', sheet_name='statistics')['note'][0]


def test_second_run_overwrites_nothing_and_resumes(folder, tmp_path):
    out = tmp_path/'out'
    with pytest.warns(UserWarning): first = analyze_folder(folder, out, **FAST)
    before = _files(out/'images')
    # same folder, same options: unchanged files are skipped, their results untouched; the bad ones are retried
    with pytest.warns(UserWarning): again = analyze_folder(folder, out, **FAST)
    st = again.images.set_index('image')['status']
    assert (st['a.tif'], st['b.tif']) == ('skipped', 'skipped') and st['corrupt.dm3'] == 'failed'
    after = _files(out/'images')
    for k in ('a/labels.tif', 'a/mask.tif', 'a/particles.csv', 'a/result.json', 'b/particles.csv'): assert after[k] == before[k], k
    pd.testing.assert_frame_equal(again.particles, first.particles)
    # no silent redo, no mixing with other options
    with pytest.raises(FileExistsError, match='overwrite=True'):
        analyze_folder(folder, out, resume=False, **FAST)
    with pytest.raises(FileExistsError, match='min_diameter_nm'):
        analyze_folder(folder, out, min_diameter_nm=1.0, **FAST)
    assert _files(out/'images') == after
    # a new file: only it is analysed
    save_micrograph(Micrograph(_disks([(64, 64)], seed=5), NM_PER_PX), folder/'c.tif')
    with pytest.warns(UserWarning): third = analyze_folder(folder, out, **FAST)
    st = third.images.set_index('image')['status']
    assert (st['a.tif'], st['b.tif'], st['c.tif']) == ('skipped', 'skipped', 'ok')
    assert len(third.particles) == 6 and _files(out/'images')['a/particles.csv'] == before['a/particles.csv']


def test_changed_file_is_not_overwritten_without_permission(folder, tmp_path):
    out = tmp_path/'out'
    analyze_folder(folder/'a.tif', out, **FAST)
    old = (out/'images/a/particles.csv').read_bytes()
    save_micrograph(Micrograph(_disks([(64, 64)], seed=7), NM_PER_PX), folder/'a.tif', overwrite=True)
    with pytest.warns(UserWarning):
        res = analyze_folder(folder/'a.tif', out, **FAST)
    assert res.images['status'][0] == 'failed' and 'SHA-256 has changed' in res.images['error'][0]
    assert (out/'images/a/particles.csv').read_bytes() == old
    res = analyze_folder(folder/'a.tif', out, overwrite=True, **FAST)
    assert res.images['status'][0] == 'ok' and res.images['n_particles'][0] == 1


def test_nm_per_px_rescues_uncalibrated_png(folder, tmp_path):
    res = analyze_folder(folder/'uncalibrated.png', tmp_path/'out', nm_per_px=NM_PER_PX, **FAST)
    r = res.images.iloc[0]
    assert (r['status'], r['nm_per_px'], r['calibration_source'], r['n_particles']) == ('ok', NM_PER_PX, 'user', 1)
    assert res.particles['diameter_nm'][0] == pytest.approx(D_TRUE_NM, abs=D_TOL_NM)


def test_same_names_in_subfolders_do_not_collide(tmp_path):
    src = tmp_path/'src'
    for i, day in enumerate(['day1', 'day2']):
        (src/day).mkdir(parents=True)
        save_micrograph(Micrograph(_disks([(40, 40)]*1 if i == 0 else [(40, 40), (90, 90)], seed=i), NM_PER_PX), src/day/'grid.tif')
    res = analyze_folder(src, tmp_path/'out', recursive=True, **FAST)
    assert list(res.images['image']) == ['day1/grid.tif', 'day2/grid.tif']
    assert res.images['output_dir'].nunique() == 2 and list(res.images['n_particles']) == [1, 2]


def test_a_saved_review_follows_its_image_when_a_same_named_file_appears(tmp_path):
    "Adding b/x.tif must not rename a/x.tif's result folder, redo it, or drop the review saved there."
    src, out = tmp_path/'src', tmp_path/'out'
    (src/'a').mkdir(parents=True)
    save_micrograph(Micrograph(_disks(GOOD['b.tif']), NM_PER_PX), src/'a'/'x.tif')
    first = analyze_folder(src, out, recursive=True, **FAST)
    assert list(first.images['image']) == ['a/x.tif'] and list(first.images['output_dir']) == ['images/a__x']
    x, _, f = _review_exclude(out, 'a/x.tif')
    (src/'b').mkdir()
    save_micrograph(Micrograph(_disks(GOOD['a.tif'], seed=1), NM_PER_PX), src/'b'/'x.tif')
    again = analyze_folder(src, out, recursive=True, **FAST).images.set_index('image')
    assert list(again.index) == ['a/x.tif', 'b/x.tif']
    assert again.loc['a/x.tif', ['status', 'output_dir', 'corrected', 'n_particles']].tolist() == ['skipped', 'images/a__x', True, 2]
    assert again.loc['b/x.tif', ['status', 'output_dir']].tolist() == ['ok', 'images/b__x']
    assert f.exists() and f.parent == out/'images'/'a__x'


def test_no_inputs_is_a_clear_error(tmp_path):
    (tmp_path/'empty_dir').mkdir()
    with pytest.raises(ValueError, match='no micrograph files'):
        analyze_folder(tmp_path/'empty_dir', tmp_path/'out', **FAST)


def test_analyze_one_micrograph(folder):
    a = analyze(folder/'b.tif', model='classical')
    assert a.n_particles == 3 and np.allclose(a.particles['diameter_nm'], D_TRUE_NM, atol=D_TOL_NM)
    assert a.mask.dtype == bool and a.labels.shape == a.micrograph.shape
    assert a.provenance['input']['sha256'] == _sha(folder/'b.tif')
    s = a.summary()
    assert s.n == 3 and s.mean == pytest.approx(D_TRUE_NM, abs=D_TOL_NM)
    fig = a.plot()
    assert len(fig.axes) >= 4


@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    "An untrained small U-Net saved with its card (the provenance test needs a real model file, not a good one)."
    from hrtem_np.segment import segmenter_learner, save_model
    items = [(Micrograph(_disks([(40, 40), (90, 80)], seed=s), NM_PER_PX), _disks([(40, 40), (90, 80)], seed=s) < 0.7)
             for s in range(2)]
    learn = segmenter_learner(items, crop_px=64, bs=2, cut=-3)
    w, _ = save_model(learn, tmp_path_factory.mktemp('model')/'tiny_unet')
    return w


def test_provenance_holds_model_and_file_hashes(folder, tmp_path, tiny_model):
    out = tmp_path/'out'
    with pytest.warns(UserWarning):
        res = analyze_folder(folder, out, model=tiny_model, progress=False, overlays=False)
    prov = json.loads((out/'provenance.json').read_text())
    assert prov['model']['sha256'] == _sha(tiny_model) == prov['options']['model_sha256']
    assert prov['model']['arch'] == 'resnet18'  # the model card travels with it
    hashes = {i['image']: i['sha256'] for i in prov['inputs']}
    for name in ('a.tif', 'b.tif', 'corrupt.dm3', 'uncalibrated.png', 'empty.tif'):
        assert hashes[name] == _sha(folder/name) == file_sha256(folder/name)
    assert {i['image']: i['status'] for i in prov['inputs']}['empty.tif'] == 'failed'
    env = prov['environment']
    for k in ('hrtem_np', 'python', 'numpy', 'torch', 'fastai', 'skimage', 'rsciio', 'platform'): assert env[k], k
    assert prov['options']['min_diameter_nm'] == 0.5 and prov['options']['edge'] == 'exclude'
    assert json.loads((out/'images/a/result.json').read_text())['sha256'] == _sha(folder/'a.tif')


def test_dask_local_cluster_equals_serial(folder, tmp_path):
    distributed = pytest.importorskip('distributed')
    for f in ('corrupt.dm3', 'notes.txt'): (folder/f).unlink()
    with pytest.warns(UserWarning): serial = analyze_folder(folder, tmp_path/'serial', **FAST)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
         distributed.Client(cluster) as client, pytest.warns(UserWarning):
        par = analyze_folder(folder, tmp_path/'dask', client=client, **FAST)
    assert (tmp_path/'dask/particles.csv').read_bytes() == (tmp_path/'serial/particles.csv').read_bytes()
    cols = ['image', 'status', 'n_particles', 'error', 'sha256']
    pd.testing.assert_frame_equal(par.images[cols], serial.images[cols])
    assert par.provenance['run']['mode'] == 'dask' and par.provenance['run']['workers'] == 2


# --- review corrections (corrections.json beside an image's results) are replayed by analyze_folder -----------------

def _review_exclude(out, image, label=None):
    "Exclude one particle of `image` with the review API on the output folder, save corrections.json; the label."
    from hrtem_np.widgets import Reviewer
    rv = Reviewer(out)
    rv.select_image(image)
    label = int(rv.current_table()['label'].iloc[0]) if label is None else label
    rv.exclude(label)
    return label, rv, rv.save(overwrite=True)


def test_review_corrections_are_replayed(folder, tmp_path):
    from hrtem_np.corrections import load_corrections
    import tifffile
    out, inputs = tmp_path/'out', [folder/'a.tif', folder/'b.tif']
    first = analyze_folder(inputs, out, **FAST)
    d = out/'images'/'b'
    raw = {f: (d/f).read_bytes() for f in ('labels.tif', 'mask.tif', 'particles.csv')}
    x, rv, f = _review_exclude(out, 'b.tif')
    assert f == d/'corrections.json' and load_corrections(f).exclude == [x]
    again = analyze_folder(inputs, out, **FAST)                               # nothing re-segmented, the review replayed
    im = again.images.set_index('image')
    assert list(im['status']) == ['skipped', 'skipped'] and list(im['corrected']) == [False, True]
    assert list(im['n_particles']) == [2, 2] and 'replayed' in im.loc['b.tif', 'note']
    assert im.loc['b.tif', 'corrections_sha256'] == _sha(f) and '1 excluded' in im.loc['b.tif', 'corrections_note']
    top = pd.read_csv(out/'particles.csv')
    assert len(top) == 4 and x not in set(top.loc[top['image'] == 'b.tif', 'label'])
    assert len(pd.read_excel(out/'summary.xlsx', sheet_name='particles')) == 4
    kept = first.particles[(first.particles['image'] == 'b.tif') & (first.particles['label'] != x)].reset_index(drop=True)
    pd.testing.assert_frame_equal(again.particles[again.particles['image'] == 'b.tif'].reset_index(drop=True), kept)
    assert {f: (d/f).read_bytes() for f in raw} == raw                        # raw results never overwritten
    assert len(pd.read_csv(d/'particles.csv')) == 3
    corrected = pd.read_csv(d/'particles_corrected.csv')
    assert len(corrected) == 2 and x not in set(corrected['label'])
    lab, lab_c = tifffile.imread(d/'labels.tif'), tifffile.imread(d/'labels_corrected.tif')
    assert (lab == x).sum() > 200 and (lab_c == x).sum() == 0 and np.array_equal(np.where(lab == x, 0, lab), lab_c)
    # unchanged review: not replayed again
    mtime = (d/'particles_corrected.csv').stat().st_mtime_ns
    pd.testing.assert_frame_equal(analyze_folder(inputs, out, **FAST).particles, again.particles)
    assert (d/'particles_corrected.csv').stat().st_mtime_ns == mtime
    # a changed review (x back, another one out) is noticed by its SHA-256 and replayed
    rv.reset(x); y = int(rv.current_table()['label'].iloc[-1]); rv.exclude(y); rv.save()
    third = analyze_folder(inputs, out, **FAST)
    b = third.particles[third.particles['image'] == 'b.tif']
    assert x in set(b['label']) and y not in set(b['label']) and len(b) == 2
    assert 'changed since' in third.images.set_index('image').loc['b.tif', 'note']
    # the review removed: the raw table again, corrected files gone
    f.unlink()
    fourth = analyze_folder(inputs, out, **FAST)
    assert not fourth.images['corrected'].any() and fourth.images['corrections_sha256'].isna().all()
    assert not (d/'particles_corrected.csv').exists() and not (d/'labels_corrected.tif').exists()
    pd.testing.assert_frame_equal(fourth.particles, first.particles)


def test_corrections_that_do_not_fit_are_reported(tmp_path):
    "A review of a run made with other options (other labels) is reported in images.csv and a warning, not applied."
    src = tmp_path/'src'; src.mkdir()
    save_micrograph(Micrograph(_disks([(40, 40), (90, 80)]), NM_PER_PX), src/'a.tif')
    img = _disks([(40, 40), (90, 90)], seed=3); img[disk((40, 95), 4)] -= 0.6   # + a 0.8 nm particle
    save_micrograph(Micrograph(img, NM_PER_PX), src/'c.tif')
    out = tmp_path/'out'
    first = analyze_folder(src, out, **FAST)
    assert list(first.images['n_particles']) == [2, 3]
    _review_exclude(out, 'c.tif')
    f = out/'images'/'c'/'corrections.json'
    text = f.read_text()
    # analysed again with a larger minimum size: the small particle is gone, so the label image differs
    with pytest.warns(UserWarning, match=r'corrections of 1 image\(s\) not applied'):
        res = analyze_folder(src, out, min_diameter_nm=1.0, overwrite=True, **FAST)
    im = res.images.set_index('image')
    assert im.loc['c.tif', 'status'] == 'ok' and im.loc['c.tif', 'n_particles'] == 2
    assert not im['corrected'].any()
    note = im.loc['c.tif', 'corrections_note']
    assert note.startswith('corrections.json NOT applied') and 'label image is not the one' in note
    assert im.loc['c.tif', 'corrections_sha256'] == _sha(f) and f.read_text() == text   # kept, untouched
    disk_im = pd.read_csv(out/'images.csv').set_index('image')
    assert not disk_im.loc['c.tif', 'corrected'] and 'label image' in disk_im.loc['c.tif', 'corrections_note']
    assert len(res.particles[res.particles['image'] == 'c.tif']) == 2                  # the raw table of the new run
    assert not (out/'images'/'c'/'particles_corrected.csv').exists()
    assert 'CORRECTIONS NOT APPLIED c.tif' in res.summary()


def test_other_options_refused_before_the_model_loads(tmp_path, monkeypatch):
    "A rerun into an out_dir made with other options is refused before the shipped model is loaded (issue 23)."
    d = tmp_path/'in'; d.mkdir()
    save_micrograph(Micrograph(_disks([(40, 40), (90, 80)]), 0.07), d/'a.tif')
    analyze_folder(d, tmp_path/'out', progress=False, overlays=False)
    import hrtem_np.segment
    def no_model(*a, **k): raise AssertionError("the model was loaded before the options were checked")
    monkeypatch.setattr(hrtem_np.segment, 'load_model', no_model)
    with pytest.raises(FileExistsError, match='different options'):
        analyze_folder(d, tmp_path/'out', element='Pt', progress=False)


def test_outputs_inside_the_input_folder_are_not_inputs(tmp_path):
    "An out_dir inside the input folder: a rerun does not read its own summary.png or label images (issue 24)."
    d = tmp_path/'in'; d.mkdir()
    save_micrograph(Micrograph(_disks([(40, 40), (90, 80)]), 0.1), d/'a.tif')
    r1 = analyze_folder(d, d/'results', model='classical', progress=False)
    r2 = analyze_folder(d, d/'results', model='classical', progress=False)
    assert r1.images['image'].tolist() == r2.images['image'].tolist() == ['a.tif']
    assert r2.images['status'].tolist() == ['skipped']


def test_tia_series_is_one_image(tmp_path):
    "A TIA .emi and its _1.ser are one micrograph (the .emi reads the .ser), not two (issue 24)."
    from hrtem_np.batch import find_micrographs, _expand
    d = tmp_path/'in'; d.mkdir()
    for f in ('x.emi', 'x_1.ser', 'lone_1.ser'): (d/f).write_bytes(b'\x00')
    assert [p.name for p in find_micrographs(d)] == ['lone_1.ser', 'x.emi']
    assert [p.name for p in _expand(d)[1]] == ['x_1.ser']


def test_user_pixel_size_far_from_the_files_is_reported(tmp_path):
    "A user nm_per_px 4x the file's own is used, and images.csv says so (issue 24)."
    d = tmp_path/'in'; d.mkdir()
    save_micrograph(Micrograph(_disks([(40, 40), (90, 80)]), 0.05), d/'a.tif')
    r = analyze_folder(d, tmp_path/'o', nm_per_px=0.2, model='classical', progress=False, overlays=False)
    row = r.images.iloc[0]
    assert row['nm_per_px'] == pytest.approx(0.2) and row['calibration_source'] == 'user'
    assert "the file's metadata says 0.05 (+300%)" in row['note']
    r2 = analyze_folder(d, tmp_path/'o2', nm_per_px=0.0502, model='classical', progress=False, overlays=False)
    assert 'metadata says' not in str(r2.images.iloc[0]['note'])   # within 1 %: nothing to report
