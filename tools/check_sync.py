"""CI guard: notebooks are clean and show their results, the package and README.md are in sync with them.

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
# every notebook in tools/outputs.json shows its results: at least two kept tables or figures (./run outputs refreshes them)
import json
short = []
for nb, c in json.loads((ROOT/'tools'/'outputs.json').read_text()).items():
    cells = json.loads((ROOT/nb).read_text())['cells']
    shown = sum(1 for x in cells if x['cell_type'] == 'code' and any(   # a figure, a table, a result or printed output
        o.get('output_type') in ('display_data', 'execute_result') or (o.get('output_type') == 'stream' and o.get('name') == 'stdout')
        for o in x.get('outputs', [])))
    if shown < 2: short.append(f"{nb}: {shown} result(s) shown")
if short:
    print("Notebooks without their results (run ./run outputs and commit):\n" + '\n'.join(short)); sys.exit(1)
print("notebooks clean, showing their results; package and README in sync")
