"""CI guard: notebooks are clean, the package and README.md are in sync with them.

Runs nbdev_export, nbdev_clean and tools/make_readme.py in place, then fails if git sees any change.
Meant for a clean checkout (CI); on a dirty tree it reports your uncommitted changes too.
"""
import subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def run(*cmd): subprocess.run(cmd, cwd=ROOT, check=True)

def changed():
    out = subprocess.run(['git', 'status', '--porcelain', '--', 'nbs', 'hrtem_np', 'README.md'],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [l for l in out.splitlines() if l.strip()]

before = set(changed())
run(str(BIN/'nbdev_export'))
run(str(BIN/'nbdev_clean'))
run(sys.executable, str(ROOT/'tools'/'make_readme.py'))
after = [l for l in changed() if l not in before]
if after:
    print("Out of sync (commit the result of nbdev_export / nbdev_clean / ./run readme):")
    print('\n'.join(after))
    subprocess.run(['git', '--no-pager', 'diff', '--stat'], cwd=ROOT)
    sys.exit(1)
print("notebooks clean; package and README in sync")
