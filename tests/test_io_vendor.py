"Every real file in ../shared/data/vendor/MANIFEST.csv loads or is refused as the manifest says."
import csv
import numpy as np
import pytest
from conftest import VENDOR
from hrtem_np.io import load_micrograph, CalibrationError, MicrographError

ROWS = list(csv.DictReader(open(VENDOR/'MANIFEST.csv'))) if (VENDOR/'MANIFEST.csv').exists() else []

def _shape(s):
    "MANIFEST shape '5x128x128 uint16' -> (5, 128, 128)"
    return tuple(int(v) for v in s.split()[0].split('x'))

def test_manifest_has_33_rows(vendor):
    assert len(ROWS) == 33

@pytest.mark.parametrize('row', ROWS, ids=[r['file'] for r in ROWS])
def test_manifest_row(vendor, row):
    path, exp, shape = vendor/row['file'], row['expected'], _shape(row['shape'])
    if exp.startswith('load'):
        if 'HAADF image' in exp:  # a Velox spectrum image: the one detector image is chosen over the element maps
            m = load_micrograph(path)
            assert m.metadata['title'] == 'HAADF'
        else:
            m = load_micrograph(path)
        assert m.shape == shape[-2:]
        assert m.image.dtype == np.float32 and np.isfinite(m.image).all()
        assert m.calibration_source == 'metadata'
        assert m.nm_per_px == pytest.approx(float(row['nm_per_px']), rel=1e-4)
    elif exp.startswith('stack'):
        with pytest.raises(MicrographError, match='frame='):
            load_micrograph(path)
        m = load_micrograph(path, frame=1)
        assert m.shape == shape[-2:]
        assert m.nm_per_px == pytest.approx(float(row['nm_per_px']), rel=1e-4)
    elif 'no calibration' in exp:
        with pytest.raises(CalibrationError, match='nm_per_px'):
            load_micrograph(path)
        m = load_micrograph(path, nm_per_px=0.05)  # the user's calibration is accepted and recorded as such
        assert (m.nm_per_px, m.calibration_source, m.shape) == (0.05, 'user', shape[-2:])
    elif 'not square' in exp:
        with pytest.raises(CalibrationError, match='not square'):
            load_micrograph(path)
        with pytest.raises(CalibrationError, match='not square.*refused even with it'):   # a user value does not make them square
            load_micrograph(path, nm_per_px=0.2)
    elif 'reciprocal' in exp:
        with pytest.raises(CalibrationError, match='reciprocal'):
            load_micrograph(path)
    else:
        pytest.fail(f"unknown expectation {exp!r}")

def test_user_calibration_overrides_metadata(vendor):
    m = load_micrograph(vendor/'ncempy/16_STOimage.emi', nm_per_px=0.01)
    assert (m.nm_per_px, m.calibration_source) == (0.01, 'user')
    assert m.metadata['file_nm_per_px'] == pytest.approx(0.0100127, rel=1e-4)

def test_signal_choice(vendor):
    p = vendor/'rosettasciio/emd/Test SI 16x16 215 kx.emd'
    m = load_micrograph(p, signal='Cu')
    assert m.metadata['title'] == 'Cu'
    with pytest.raises(MicrographError, match="signal="):
        load_micrograph(p, signal='nope')

def test_au_nanoparticle_velox(vendor):
    m = load_micrograph(vendor/'temul/example_Au_nanoparticle.emd')
    assert m.shape == (2048, 2048) and m.nm_per_px == pytest.approx(0.0074984, rel=1e-4)
