"""Nothing lost, nothing misrecorded (issue 24): killed runs, dead workers, concurrent runs, reruns with other inputs,
hand-edited tables. Kill tests use real processes and real signals (no mocks)."""
import json, os, signal, subprocess, sys, threading, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk

from hrtem_np.io import Micrograph, save_micrograph
from hrtem_np.batch import analyze_folder, LOCK_FILE

REPO = Path(__file__).resolve().parents[1]
NM_PER_PX = 0.1
FAST = dict(model='classical', progress=False, overlays=False)
CLI = [sys.executable, '-c', 'import sys; from hrtem_np.cli import main; sys.exit(main())']


def _disks(n, shape=(128, 128), seed=0):
    "n dark disks of radius 10 px on a noisy background (bright-field particles), float32."
    rng = np.random.default_rng(seed)
    img = 1.0 + 0.05*rng.standard_normal(shape)
    for k in range(n): img[disk((30 + 35*(k % 3), 30 + 35*(k // 3)), 10, shape=shape)] -= 0.6
    return img.astype(np.float32)


def _folder(d:Path, n_images:int, shape=(128, 128))->Path:
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n_images): save_micrograph(Micrograph(_disks(1 + i % 3, shape, seed=i), NM_PER_PX), d/f'img_{i:02d}.tif')
    return d


def _procs():
    "(pid, state, ppid, session) of every live process, from /proc/<pid>/stat."
    for p in Path('/proc').iterdir():
        if not p.name.isdigit(): continue
        try: stat = (p/'stat').read_text()
        except OSError: continue
        f = stat[stat.rindex(')') + 2:].split()   # after "pid (comm) ": state ppid pgrp session …
        yield int(p.name), f[0], int(f[1]), int(f[3])


def _session_procs(sid:int)->list:
    "PIDs of live processes in session `sid` (children of a killed parent are re-parented, but keep their session)."
    return [pid for pid, state, _, s in _procs() if s == sid and state != 'Z']


def _children(pid:int)->list:
    "PIDs whose parent is `pid`."
    return [p for p, _, ppid, _ in _procs() if ppid == pid]


needs_proc = pytest.mark.skipif(not Path('/proc/self/stat').exists(), reason='process checks read /proc (Linux)')


# --- 1. a rerun with other inputs keeps the earlier images (the tables are a union) ---

def test_rerun_with_fewer_inputs_keeps_the_earlier_rows(tmp_path):
    src, out = _folder(tmp_path/'src', 3), tmp_path/'out'
    first = analyze_folder(src, out, **FAST)
    again = analyze_folder(src/'img_00.tif', out, **FAST)      # only one of the three given now
    im = again.images.set_index('image')
    assert list(im.index) == ['img_00.tif', 'img_01.tif', 'img_02.tif']
    assert im.loc['img_01.tif', 'status'] == 'skipped' and "not among this run's inputs" in im.loc['img_01.tif', 'note']
    pd.testing.assert_frame_equal(again.particles, first.particles)    # 6 particles, not 1
    assert len(pd.read_csv(out/'particles.csv')) == len(first.particles)


def test_an_earlier_failure_stays_listed(tmp_path):
    src, out = _folder(tmp_path/'src', 1), tmp_path/'out'
    (src/'broken.tif').write_bytes(b'not a tiff')
    analyze_folder(src, out, **FAST)
    again = analyze_folder(src/'img_00.tif', out, **FAST).images.set_index('image')
    assert again.loc['broken.tif', 'status'] == 'failed' and again.loc['broken.tif', 'error']


# --- 2. a hand-edited table is never replaced without overwrite ---

def test_hand_edited_table_is_not_replaced(tmp_path):
    src, out = _folder(tmp_path/'src', 2), tmp_path/'out'
    analyze_folder(src, out, **FAST)
    t = pd.read_csv(out/'particles.csv'); t.loc[0, 'diameter_nm'] = 99.0; t.to_csv(out/'particles.csv', index=False)
    edited = (out/'particles.csv').read_bytes()
    with pytest.raises(FileExistsError, match=r'particles\.csv changed since hrtem_np wrote'):
        analyze_folder(src, out, **FAST)
    assert (out/'particles.csv').read_bytes() == edited
    analyze_folder(src, out, overwrite=True, **FAST)                  # asked for: rebuilt
    assert pd.read_csv(out/'particles.csv')['diameter_nm'].max() < 3


# --- 3. an image's folder appears only when complete; what a killed run left is cleaned ---

def test_leftovers_of_a_killed_run_are_cleaned_and_recorded(tmp_path):
    src, out = _folder(tmp_path/'src', 2), tmp_path/'out'
    analyze_folder(src, out, **FAST)
    imgs = out/'images'
    (imgs/'.img_00.partial-4242').mkdir(); (imgs/'.img_00.partial-4242'/'particles.csv').write_text('label\n1\n')
    (out/'.summary.x1y2.png').write_bytes(b'')                           # a 0-byte hidden temporary of atomic_write
    (imgs/'img_01'/'.particles.abcd.csv').write_bytes(b'')
    os.replace(imgs/'img_01', imgs/'.img_01.old-4242')                   # killed between the two renames of a swap
    res = analyze_folder(src, out, **FAST)
    assert sorted(p.name for p in imgs.iterdir()) == ['img_00', 'img_01']
    assert not list(out.glob('.summary.*')) and not list((imgs/'img_01').glob('.*'))
    assert list(res.images['status']) == ['skipped', 'skipped']      # the restored folder is reused, not redone
    cleaned = json.loads((out/'provenance.json').read_text())['run']['cleaned']
    assert any('restored img_01' in c for c in cleaned) and any('.img_00.partial-4242' in c for c in cleaned)


@needs_proc
def test_killed_serial_run_leaves_nothing_that_looks_finished(tmp_path):
    src, out = _folder(tmp_path/'src', 12, shape=(768, 768)), tmp_path/'out'
    p = subprocess.Popen(CLI + ['analyze', str(src), '--out', str(out), '--model', 'classical', '--quiet'], cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < 120 and len(list((out/'images').glob('img_*'))) < 2: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    done = list((out/'images').glob('img_*'))
    assert 2 <= len(done) < 12, 'the run finished before it could be killed'
    for d in done:   # every visible image folder is complete: its result.json is there with its tables
        assert (d/'result.json').exists() and (d/'particles.csv').exists(), sorted(x.name for x in d.iterdir())
    assert (out/LOCK_FILE).exists()                                       # the killed run's lock …
    res = analyze_folder(src, out, **FAST)                               # … is stale: taken over, the run completes
    assert res.n_failed == 0 and len(res.images) == 12 and not (out/LOCK_FILE).exists()
    assert not [x for x in (out/'images').iterdir() if x.name.startswith('.')]


# --- 4. two runs into one folder: the second is refused while the first runs ---

@needs_proc
def test_second_run_into_the_same_folder_is_refused(tmp_path):
    src, out = _folder(tmp_path/'src', 1), tmp_path/'out'
    out.mkdir()
    other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])   # a live process holds the lock
    try:
        import platform
        (out/LOCK_FILE).write_text(json.dumps(dict(pid=other.pid, host=platform.node(), started='now')))
        with pytest.raises(FileExistsError, match=f'in use by another hrtem_np run \\(pid {other.pid}'):
            analyze_folder(src, out, **FAST)
        assert not (out/'images').exists()                               # refused before any work
    finally: other.kill(); other.wait()
    assert analyze_folder(src, out, **FAST).n_ok == 1                    # its process gone: the lock is stale


# --- 5. killing the main process of a parallel run ends its workers ---

@needs_proc
def test_killed_parallel_run_leaves_no_orphans(tmp_path):
    src, out = _folder(tmp_path/'src', 8, shape=(1024, 1024)), tmp_path/'out'
    p = subprocess.Popen(CLI + ['analyze', str(src), '--out', str(out), '--model', 'classical', '--workers', '2', '--quiet'],
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 120 and len(_session_procs(p.pid)) < 4: time.sleep(0.1)   # main, forkserver, 2 workers (+ tracker)
    assert len(_session_procs(p.pid)) >= 4, 'the pool did not start'
    p.send_signal(signal.SIGKILL); p.wait()
    t0 = time.time()
    while time.time() - t0 < 15 and _session_procs(p.pid): time.sleep(0.2)
    left = _session_procs(p.pid)
    for pid in left: os.kill(pid, signal.SIGKILL)                       # do not leave them to the next test
    assert not left, f"{len(left)} processes of the killed run still alive after 15 s"


# --- 6. a dead worker costs only its own image ---

@needs_proc
def test_a_killed_worker_costs_no_image(tmp_path):
    src, out = _folder(tmp_path/'src', 8, shape=(1024, 1024)), tmp_path/'out'
    killed, stop = [], threading.Event()
    def kill_one_worker():
        while not stop.is_set() and not killed:
            for fs in _children(os.getpid()):          # the forkserver is our child; the pool workers are its children
                try: cmd = Path(f'/proc/{fs}/cmdline').read_bytes()
                except OSError: continue
                if b'forkserver' in cmd and len(list((out/'images').glob('img_*'))) >= 1:
                    workers = _children(fs)
                    if workers: os.kill(workers[0], signal.SIGKILL); killed.append(workers[0]); break
            time.sleep(0.05)
    th = threading.Thread(target=kill_one_worker); th.start()
    try: res = analyze_folder(src, out, workers=2, **FAST)
    finally: stop.set(); th.join()
    assert killed, 'no worker was killed: the run ended first'
    assert res.n_failed == 0 and res.n_ok == 8, res.images[['image', 'status', 'error']]
    serial = analyze_folder(src, tmp_path/'serial', **FAST)
    pd.testing.assert_frame_equal(res.particles, serial.particles)


# --- 7. pixel sizes read from files meet the same scope guard as those given by the user ---

def test_file_pixel_sizes_outside_the_models_scope_are_refused_at_once(tmp_path):
    vendor = REPO.parent/'shared'/'data'/'vendor'
    files = [vendor/'rosettasciio'/'tiff'/'FEI-Helios-Ebeam-8bits.tif', vendor/'particlespy'/'JEOL HAADF Image.dm4']
    if not all(f.exists() for f in files): pytest.skip(f"real files not found under {vendor} (../shared/data beside the repo)")
    t0 = time.time()
    with pytest.warns(UserWarning, match='2 of 2 inputs failed'):
        res = analyze_folder(files, tmp_path/'out', progress=False, overlays=False)   # the shipped model, as a user would
    err = res.images.set_index('image')['error']
    assert "3372.4 nm/px is outside the model's scope" in err['FEI-Helios-Ebeam-8bits.tif']    # an SEM TIFF: not 3 TB in torch
    assert "1.24901 nm/px is outside the model's scope" in err['JEOL HAADF Image.dm4']         # a HAADF overview: not 140 s of work
    assert time.time() - t0 < 60
