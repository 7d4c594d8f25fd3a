"Batch analysis on folders with good and bad files: results, failure rows, no overwriting, resume, provenance, Dask."
import hashlib, json, os, shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.draw import disk

from hrtem_np.io import Micrograph, save_micrograph
from hrtem_np.batch import analyze, analyze_folder, file_sha256, BatchError

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
    assert set(xl) == {'particles', 'images', 'statistics', 'provenance'}
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
