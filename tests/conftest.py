import os
from pathlib import Path
import pytest

os.environ.setdefault('MPLBACKEND', 'Agg')
os.environ.setdefault('OMP_NUM_THREADS', '1')

REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO.parent/'shared'/'data'/'vendor'

@pytest.fixture(scope='session')
def vendor():
    "Folder of real microscope files (../shared/data/vendor); tests skip when it is absent."
    if not (VENDOR/'MANIFEST.csv').exists():
        pytest.skip(f"real microscope files not found at {VENDOR} (../shared/data/vendor beside the repo); "
                    "these tests need the shared data checkout")
    return VENDOR
