"The hrtem-np command line: exit codes, analyze on a folder with bad files, the demo, simulate and train."
import configparser, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.draw import disk

from hrtem_np.io import Micrograph, save_micrograph
from hrtem_np.cli import main

REPO = Path(__file__).resolve().parents[1]
NM_PER_PX = 0.1


def _disks(centres, r_px=10, shape=(128, 128), seed=0):
    rng = np.random.default_rng(seed)
    img = 1.0 + 0.05*rng.standard_normal(shape)
    for c in centres: img[disk(c, r_px, shape=shape)] -= 0.6
    return img.astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    "Two good calibrated TIFFs, a corrupt file, an uncalibrated PNG and an empty file."
    f = tmp_path/'in'; f.mkdir()
    save_micrograph(Micrograph(_disks([(40, 40), (90, 80)]), NM_PER_PX), f/'a.tif')
    save_micrograph(Micrograph(_disks([(30, 90), (80, 30), (95, 95)], seed=1), NM_PER_PX), f/'b.tif')
    (f/'corrupt.dm4').write_bytes(b'\x00\x00\x00\x04' + b'\xff'*100)
    Image.fromarray((_disks([(64, 64)])*200).clip(0, 255).astype(np.uint8)).save(f/'uncalibrated.png')
    (f/'empty.tif').write_bytes(b'')
    return f


def run(capsys, *args):
    "(exit status, stdout, stderr) of `hrtem-np args`, in this process."
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_console_script_is_declared():
    cfg = configparser.ConfigParser(delimiters=['=']); cfg.read(REPO/'settings.ini')
    assert cfg['DEFAULT']['console_scripts'].strip() == 'hrtem-np=hrtem_np.cli:main'


def test_help_and_usage_errors(capsys, tmp_path):
    for cmd in ('analyze', 'simulate', 'train', 'demo'):
        code, out, _ = run(capsys, cmd, '--help')
        assert code == 0 and 'usage: hrtem-np' in out and '--out' in out
    assert run(capsys, '--version')[0] == 0
    assert run(capsys)[0] == 1                                           # no command
    assert run(capsys, 'frobnicate')[0] == 1                             # unknown command
    code, _, err = run(capsys, 'analyze', 'x.tif')                       # --out missing
    assert code == 1 and '--out' in err
    assert run(capsys, 'analyze', 'x.tif', '--out', tmp_path, '--workers', '0')[0] == 1
    assert run(capsys, 'analyze', 'x.tif', '--out', tmp_path, '--nm-per-px', '-0.1')[0] == 1
    (tmp_path/'nothing').mkdir()
    code, _, err = run(capsys, 'analyze', tmp_path/'nothing', '--out', tmp_path/'o', '--model', 'classical')
    assert code == 1 and 'no micrograph files' in err


def test_analyze_exit_codes_and_no_overwrite(capsys, folder, tmp_path):
    out = tmp_path/'out'
    code, stdout, _ = run(capsys, 'analyze', folder, '--out', out, '--model', 'classical', '--quiet', '--no-overlays')
    assert code == 2
    assert '3 failed' in stdout and 'FAILED corrupt.dm4' in stdout and 'FAILED empty.tif' in stdout
    im = pd.read_csv(out/'images.csv').set_index('image')
    assert im['status'].to_dict() == {'a.tif': 'ok', 'b.tif': 'ok', 'corrupt.dm4': 'failed', 'empty.tif': 'failed',
                                      'uncalibrated.png': 'failed'}
    assert 'nm_per_px' in im.loc['uncalibrated.png', 'error']
    assert len(pd.read_csv(out/'particles.csv')) == 5
    results = lambda: {p: (p.stat().st_mtime_ns, p.read_bytes()) for d in ('a', 'b') for p in (out/'images'/d).iterdir()}
    before = results()
    assert len(before) == 10  # labels.tif, mask.tif, particles.csv, dropped.csv, result.json of each good image
    # again: the good ones are reused (skipped), nothing rewritten; still exit 2 (the bad files are retried, still bad)
    code, stdout, _ = run(capsys, 'analyze', folder, '--out', out, '--model', 'classical', '--quiet', '--no-overlays')
    assert code == 2 and '2 skipped' in stdout
    assert results() == before
    # redoing or changing options needs --overwrite
    code, _, err = run(capsys, 'analyze', folder, '--out', out, '--model', 'classical', '--quiet', '--no-resume')
    assert code == 1 and '--overwrite' in err
    code, _, err = run(capsys, 'analyze', folder, '--out', out, '--model', 'classical', '--quiet', '--element', 'Pt')
    assert code == 1 and 'element' in err
    code, _, err = run(capsys, 'analyze', folder, '--out', tmp_path/'x', '--model', 'classical', '--element', 'Xx')
    assert code == 1 and "'Xx'" in err and not (tmp_path/'x').exists()
    # only good inputs → 0; the PNG is fine with --nm-per-px
    code, stdout, _ = run(capsys, 'analyze', folder/'a.tif', folder/'uncalibrated.png', '--out', tmp_path/'ok',
                          '--model', 'classical', '--quiet', '--nm-per-px', NM_PER_PX)
    assert code == 0 and '2 analysed' in stdout and '0 failed' in stdout


def test_exit_status_of_a_real_process(folder, tmp_path):
    "The exit status reaches the shell, as from the console script `hrtem-np` (bad inputs only: no model is loaded)."
    cli = [sys.executable, '-c', 'import sys; from hrtem_np.cli import main; sys.exit(main())']
    bad = [str(folder/f) for f in ('corrupt.dm4', 'empty.tif', 'uncalibrated.png')]
    p = subprocess.run(cli + ['analyze', *bad, '--out', str(tmp_path/'out'), '--model', 'classical', '--quiet'],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert 'FAILED empty.tif' in p.stdout and len(pd.read_csv(tmp_path/'out'/'images.csv')) == 3
    p = subprocess.run(cli + ['analyze', bad[0]], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and '--out' in p.stderr


def test_demo(capsys, tmp_path):
    out = tmp_path/'demo'
    code, stdout, _ = run(capsys, 'demo', '--out', out, '--model', 'classical', '--quiet')
    assert code == 0
    assert 'Measured vs true' in stdout and str(out/'summary.xlsx') in stdout and str(out/'summary.png') in stdout
    for f in ('particles.csv', 'images.csv', 'summary.xlsx', 'summary.png', 'provenance.json', 'truth_comparison.csv'):
        assert (out/f).stat().st_size > 0, f
    cmp = pd.read_csv(out/'truth_comparison.csv').set_index('image')
    truth = pd.read_csv(REPO/'hrtem_np'/'data'/'sample_truth.csv')
    assert cmp.loc['all', 'n_true'] == len(truth) == 35
    assert cmp.loc['all', 'n_measured'] == len(pd.read_csv(out/'particles.csv'))
    assert 0 < cmp.loc['all', 'n_matched'] <= cmp.loc['all', 'n_true']
    # the sample files are calibrated: no nm_per_px needed, recorded as from the metadata
    im = pd.read_csv(out/'images.csv')
    assert (im['calibration_source'] == 'metadata').all() and np.allclose(im['nm_per_px'], [0.04, 0.05, 0.03])
    code, _, err = run(capsys, 'demo', '--out', out, '--model', 'classical', '--quiet')
    assert code == 1 and '--overwrite' in err
    assert run(capsys, 'demo', '--out', out, '--model', 'classical', '--quiet', '--overwrite')[0] == 0


def test_sample_data_is_small_and_calibrated():
    from hrtem_np.io import load_micrograph
    from hrtem_np.cli import sample_micrographs
    d = REPO/'hrtem_np'/'data'
    assert sum(p.stat().st_size for p in d.iterdir()) < 2e6
    ms = [load_micrograph(p) for p in sample_micrographs()]
    assert [m.calibration_source for m in ms] == ['metadata']*3
    assert [round(m.nm_per_px, 6) for m in ms] == [0.04, 0.05, 0.03]
    truth = pd.read_csv(d/'sample_truth.csv')
    assert truth['touching'].any() and set(truth['element']) == {'Au'}
    with np.load(d/'sample_truth_labels.npz') as z:
        for m, stem in zip(ms, ('sample_01', 'sample_02', 'sample_03')):
            assert z[stem].shape == m.shape and z[stem].max() == (truth['image'] == f'{stem}.tif').sum()


def test_simulate_then_train(capsys, tmp_path):
    data = tmp_path/'sim'
    code, stdout, _ = run(capsys, 'simulate', '--out', data, '-n', '2', '--size', '128', '--seed', '3', '--quiet')
    assert code == 0 and str(data) in stdout
    assert len(list((data/'images').glob('*.tif'))) == 2 and len(list((data/'labels').glob('*.tif'))) == 2
    assert len(pd.read_csv(data/'truth.csv')) > 0
    model = tmp_path/'my_unet.safetensors'
    code, stdout, _ = run(capsys, 'train', data, '--out', model, '--pretrained', 'none', '--epochs', '1', '--bs', '2',
                          '--crop-px', '64', '--quiet')
    assert code == 0 and model.exists() and model.with_suffix('.json').exists()
    code, _, err = run(capsys, 'train', data, '--out', model, '--pretrained', 'none', '--epochs', '1', '--quiet')
    assert code == 1 and 'exists' in err


def test_frame_and_signal_in_the_cli(tmp_path, capsys):
    "The CLI can do what the refusal of a stack names: --frame (issue 24)."
    import tifffile
    d = tmp_path/'in'; d.mkdir()
    stack = np.stack([_disks([(40, 40), (90, 80)]), _disks([(64, 64)], seed=1)]).astype(np.float32)
    tifffile.imwrite(d/'stack.tif', stack, imagej=True, resolution=(1/NM_PER_PX, 1/NM_PER_PX), metadata={'unit': 'nm', 'axes': 'ZYX'})
    assert run(capsys, 'analyze', d, '--out', tmp_path/'o1', '--model', 'classical', '--quiet')[0] == 2
    err = pd.read_csv(tmp_path/'o1'/'images.csv').error[0]
    assert 'frame=' in err and '--frame' in err
    code, out, _ = run(capsys, 'analyze', d, '--out', tmp_path/'o2', '--model', 'classical', '--frame', 1, '--quiet')
    assert code == 0 and pd.read_csv(tmp_path/'o2'/'images.csv').n_particles[0] == 1


def test_bad_option_values_are_refused_by_name(tmp_path):
    "Booleans, NaN and fractional frames are refused with the option's name, before any work (issue 24)."
    from hrtem_np.batch import analysis_options
    from hrtem_np.io import CalibrationError
    with pytest.raises(CalibrationError, match='boolean'): analysis_options({'name': 'classical'}, nm_per_px=True)
    with pytest.raises(ValueError, match='min_diameter_nm'): analysis_options({'name': 'classical'}, min_diameter_nm=float('nan'))
    with pytest.raises(ValueError, match='frame'): analysis_options({'name': 'classical'}, frame=1.5)
    with pytest.raises(ValueError, match='min_confidence'): analysis_options({'name': 'classical'}, min_confidence=2)


def test_unapplied_review_is_not_exit_0(folder, tmp_path, capsys):
    "A review saved for other results is not applied, and the CLI says so with exit status 2 (issue 24)."
    from hrtem_np.corrections import Corrections, save_corrections
    out = tmp_path/'out'
    run(capsys, 'analyze', folder/'a.tif', '--out', out, '--model', 'classical', '--quiet')
    save_corrections(Corrections('0'*64, '0'*64, NM_PER_PX, exclude=[1]), out/'images'/'a')
    code, stdout, _ = run(capsys, 'analyze', folder/'a.tif', '--out', out, '--model', 'classical', '--quiet')
    assert code == 2 and 'CORRECTIONS NOT APPLIED a.tif' in stdout


def test_train_shares_the_fine_tune_recipe(capsys, tmp_path):
    "`hrtem-np train` from a model uses FINE_TUNE_RECIPE (the API's one call), from scratch train_segmenter's defaults (issue 25)."
    import inspect, json
    from hrtem_np.cli import _parser, _train_recipe
    from hrtem_np.fine_tune import FINE_TUNE_RECIPE
    from hrtem_np.segment import train_segmenter
    args = lambda *x: _parser().parse_args(['train', 'data', '--out', 'm', *x])
    assert _train_recipe(args()) == (FINE_TUNE_RECIPE, True)
    assert _train_recipe(args('--pretrained', 'my.safetensors'))[0] == FINE_TUNE_RECIPE
    sig = inspect.signature(train_segmenter).parameters
    scratch, from_model = _train_recipe(args('--pretrained', 'none'))
    assert not from_model and scratch == {k: sig[k].default for k in ('epochs', 'freeze_epochs', 'lr', 'crop_px', 'bs')}
    assert _train_recipe(args('--epochs', '2', '--crop-px', '96'))[0] == {**FINE_TUNE_RECIPE, 'epochs': 2, 'crop_px': 96}
    # and it runs: fine-tunes the shipped model, scores the held-out share before and after, records the lineage
    data = tmp_path/'sim'
    assert run(capsys, 'simulate', '--out', data, '-n', '3', '--size', '128', '--seed', '4', '--quiet')[0] == 0
    model = tmp_path/'lab.safetensors'
    code, stdout, _ = run(capsys, 'train', data, '--out', model, '--epochs', '1', '--crop-px', '64', '--bs', '2', '--quiet')
    assert code == 0 and 'held-out pixel IoU' in stdout
    card = json.loads(model.with_suffix('.json').read_text())
    # crops_per_epoch=None resolves to 16 per training image (2 here: 3 given, 1 held out)
    assert card['fine_tune']['recipe'] == {**FINE_TUNE_RECIPE, 'epochs': 1, 'crop_px': 64, 'bs': 2, 'crops_per_epoch': 32}
    assert card['fine_tune']['holdout'] == 1
