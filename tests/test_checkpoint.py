"""Checkpoints inside a fold and the stop signals: a fold stopped anywhere and started again reaches what it
would have reached uninterrupted; a killed run, restarted, writes identical fold files.

Like test_train.py, this file imports neither cv2, dlib, openpyxl nor scikit-learn.
"""
import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import toy_run
from test_train import TOY, _data, needs_cuda
from toy import learnable

import loso
import train
from engine import checkpoint, graphs, runfolder

HERE = Path(__file__).resolve().parent


def _setup(device='cpu', **kw):
    x, meta = learnable(n_subjects=3, per=3, macro=3, size=36)
    cfg = dataclasses.replace(TOY, size=36, epochs=3, batch_size=8, checkpoint_every=0,
                              device=device, **kw)
    return loso.plan_folds(meta), _data(x, meta, device), len(meta), cfg


class StopAt:
    """A progress bar that asks for a stop, as SIGTERM does inside training, once `at` steps are taken."""
    def __init__(self, at):
        self.n, self.at = 0, at

    def update(self, n):
        self.n += n
        if self.n >= self.at:
            checkpoint._on_signal(signal.SIGTERM, None)


def _weights(key, folder):
    return torch.load(checkpoint.path(folder, key), weights_only=True)['state']


@pytest.mark.slow
def test_a_fold_stopped_at_any_step_goes_on_as_if_never_stopped(tmp_path, monkeypatch):
    specs, data, pool, cfg = _setup()
    dev = torch.device('cpu')
    key = specs[0][0]
    whole = list(graphs.train_folds(specs[:1], data, pool, cfg, dev))[0]
    for at in (3, 4):                     # 2 steps an epoch: inside an epoch, at an epoch's end
        monkeypatch.setitem(checkpoint._stop, 'signal', None)
        with pytest.raises(checkpoint.Stopped) as e, checkpoint.deferred():
            list(graphs.train_folds(specs[:1], data, pool, cfg, dev, progress=StopAt(at), keep=tmp_path))
        assert e.value.args[:2] == ('SIGTERM', [(key, at, 6)])          # saved at the step it stopped after
        assert int(_weights(key, tmp_path)['t']) == at
        monkeypatch.setitem(checkpoint._stop, 'signal', None)
        taken = []
        again = list(graphs.train_folds(specs[:1], data, pool, cfg, dev, keep=tmp_path,
                                        progress=type('P', (), {'update': lambda self, n: taken.append(n)})()))[0]
        assert taken[0] == at and sum(taken) == 6                    # it went on from there, not from the start
        assert np.array_equal(again[1], whole[1]) and np.array_equal(again[2], whole[2]) and again[3] == whole[3]
        checkpoint.remove(tmp_path, key)


def test_checkpoints_at_epoch_ends_restore_every_tensor_in_place(tmp_path):
    specs, data, pool, cfg = _setup()
    dev = torch.device('cpu')
    list(graphs.train_folds(specs[:1], data, pool, dataclasses.replace(cfg, epochs=2), dev, keep=tmp_path))
    key = specs[0][0]
    saved = _weights(key, tmp_path)                                # after epoch 1 of 2 (none after the last)
    assert int(saved['t']) == 2 and saved['sums'][0, -1] == 16 and saved['sums'][1, -1] == 0
    assert {'adam.0.exp_avg', 'adam.0.exp_avg_sq', 'adam.0.step', 'net.trunk.bn1.running_var'} <= set(saved)
    fold = train.new_fold(key, specs[0][1], specs[0][2], dataclasses.replace(cfg, epochs=2), pool, dev)
    before = {k: v.data_ptr() for k, v in fold.net.state_dict().items()}
    assert checkpoint.restore(tmp_path, fold) == 2
    assert {k: v.data_ptr() for k, v in fold.net.state_dict().items()} == before      # the same tensors, refilled
    for k, v in checkpoint.fold_state(fold).items():
        assert torch.equal(v, saved[k]), k


@pytest.mark.slow
def test_a_damaged_checkpoint_is_ignored_with_a_warning(tmp_path, caplog):
    specs, data, pool, cfg = _setup()
    dev = torch.device('cpu')
    key, tr, te = specs[0]
    whole = list(graphs.train_folds(specs[:1], data, pool, cfg, dev))[0]
    fold = train.new_fold(key, tr, te, cfg, pool, dev)
    train.fold_step(fold, data, cfg)
    checkpoint.save(tmp_path, fold)
    raw = checkpoint.path(tmp_path, key).read_bytes()
    checkpoint.path(tmp_path, key).write_bytes(raw[:len(raw) // 2])            # cut short
    again = list(graphs.train_folds(specs[:1], data, pool, cfg, dev, keep=tmp_path))[0]
    assert 'unusable checkpoint' in caplog.text and key in caplog.text
    assert np.array_equal(again[1], whole[1]) and again[3] == whole[3]
    # One of another fold (or another schedule) under this fold's name is not used either.
    other = train.new_fold(key, tr, te, dataclasses.replace(cfg, epochs=4), pool, dev)
    checkpoint.save(tmp_path, other)
    assert checkpoint.restore(tmp_path, train.new_fold(key, tr, te, cfg, pool, dev)) == 0
    assert not checkpoint.path(tmp_path, key).exists()


@pytest.mark.slow
def test_the_final_model_stopped_at_any_step_goes_on_as_if_never_stopped(tmp_path, monkeypatch):
    specs, data, pool, cfg = _setup()
    dev = torch.device('cpu')
    every = np.arange(pool)
    whole, whole_log = graphs.train_all(every, data, pool, cfg, dev)
    for at in (3, 4):
        monkeypatch.setitem(checkpoint._stop, 'signal', None)
        with pytest.raises(checkpoint.Stopped) as e, checkpoint.deferred():
            graphs.train_all(every, data, pool, cfg, dev, progress=StopAt(at), keep=tmp_path)
        assert e.value.args[:2] == ('SIGTERM', [(checkpoint.FINAL, at, 6)])
        msg = checkpoint.message(checkpoint.Stopped('SIGTERM', e.value.args[1], tmp_path, None))
        assert f"kept the final model's checkpoint at step {at} of 6 in {tmp_path}" in msg, msg
        monkeypatch.setitem(checkpoint._stop, 'signal', None)
        taken = []
        again, log = graphs.train_all(every, data, pool, cfg, dev, keep=tmp_path,
                                      progress=type('P', (), {'update': lambda self, n: taken.append(n)})())
        assert taken[0] == at and sum(taken) == 6
        assert log == whole_log
        for (k, a), b in zip(again.state_dict().items(), whole.state_dict().values()):
            assert torch.equal(a, b), k
        checkpoint.remove(tmp_path, checkpoint.FINAL)


@needs_cuda
def test_cuda_graphs_read_the_restored_state(tmp_path, monkeypatch):
    torch.backends.cudnn.deterministic = True
    monkeypatch.setitem(checkpoint._stop, 'signal', None)
    specs, data, pool, cfg = _setup('cuda')
    dev = torch.device('cuda')
    whole = {r[0]: r for r in graphs.train_folds(specs[:2], data, pool, cfg, dev, streams=2)}
    with pytest.raises(checkpoint.Stopped), checkpoint.deferred():
        list(graphs.train_folds(specs[:2], data, pool, cfg, dev, streams=2, progress=StopAt(6), keep=tmp_path))
    monkeypatch.setitem(checkpoint._stop, 'signal', None)
    checkpoint.remove(tmp_path, specs[1][0])          # one fold of the wave starts again, the other goes on
    again = {r[0]: r for r in graphs.train_folds(specs[:2], data, pool, cfg, dev, streams=2, keep=tmp_path)}
    for key in whole:
        assert np.array_equal(again[key][1], whole[key][1]) and np.array_equal(again[key][2], whole[key][2])
        for a, b in zip(again[key][3], whole[key][3]):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------------------------- killed runs
# Four epochs: a fold checkpoints at the end of each of its first three, so that a signal sent within a second of
# its first checkpoint finds it still in training, three epochs from its end, however loaded the machine.
EPOCHS = 4


def _start(out, jobs):
    return subprocess.Popen([sys.executable, str(HERE / 'toy_run.py'), str(out), str(jobs), str(EPOCHS)],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _until_resumed(p):
    seen = ''
    for line in p.stderr:
        seen += line
        if 'resumed at step' in line:
            return seen
    raise AssertionError(f'the run did not resume a fold:\n{seen}')


def _wait_for(p, ready):
    """Polls until ready() or the run has ended; a run that does neither in 10 minutes fails the test."""
    deadline = time.time() + 600
    while p.poll() is None and not ready() and time.time() < deadline:
        time.sleep(0.1)
    assert time.time() < deadline, 'the run neither checkpointed nor ended'


def _running(pid):
    try:
        return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _files(out):
    return {f.name: f.read_bytes() for f in sorted((out / 'folds').iterdir()) if f.suffix in ('.csv', '.log')}


@pytest.mark.slow
def test_a_run_stopped_killed_and_resumed_with_other_jobs_writes_the_fold_files_of_one_run_in_shards(tmp_path):
    # The reference: the same toy LOSO (toy_run.py's settings) uninterrupted, in two shards in this process, with
    # two threads offered to torch: a result must not depend on the threads, the processes or the shards.
    x, meta = toy_run.data()
    ref = tmp_path / 'ref'
    threads = torch.get_num_threads()
    try:
        for shard in (1, 2), (2, 2):
            torch.set_num_threads(2)
            runfolder.run(x, meta, toy_run.settings(epochs=EPOCHS), ref, shard=shard)
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / 'run'
    # SIGTERM at a random moment once a fold has saved a checkpoint, two training processes.
    p = _start(out, 2)
    _wait_for(p, lambda: any((out / 'folds').glob('*.ckpt')))
    workers = toy_run.children(p.pid)
    time.sleep(random.uniform(0, 1))
    p.send_signal(signal.SIGTERM)
    err = p.communicate(timeout=600)[1]
    last = err.strip().splitlines()[-1]
    if p.returncode == 0:
        pytest.skip('the run finished before the signal came (an idle fast machine): nothing was stopped')
    assert p.returncode == checkpoint.STOPPED and 'Traceback' not in err and 'leaked' not in err, err
    assert last.startswith('mer.py: stopped by SIGTERM; kept ') and 'run the same command again' in last, last
    deadline = time.time() + 30            # the resource tracker ends once it reads its pipe's end
    while time.time() < deadline and any(map(_running, workers)):
        time.sleep(0.1)
    assert len(workers) >= 2 and not [w for w in workers if _running(w)], 'orphans'
    kept = sorted(f.stem for f in (out / 'folds').glob('*.ckpt'))
    assert kept, f'no fold was in training when the signal came: {last}'
    assert all(k in last for k in kept), last
    # Started again, and SIGUSR1 to every process of the run, as SLURM's --signal sends it, once it has resumed.
    p = _start(out, 2)
    err = _until_resumed(p)
    os.killpg(p.pid, signal.SIGUSR1)
    err += p.communicate(timeout=600)[1]
    assert p.returncode in (0, checkpoint.STOPPED) and 'Traceback' not in err and 'leaked' not in err, err
    # Started again with one process, and killed by SIGKILL at a random moment after it has resumed.
    p = _start(out, 1)
    _until_resumed(p)
    time.sleep(random.uniform(0, 1))
    p.kill()
    p.communicate(timeout=60)
    # And once more, to the end.
    p = _start(out, 1)
    err = p.communicate(timeout=600)[1]
    assert p.returncode == 0, err
    assert not list((out / 'folds').glob('*.ckpt'))              # removed once their fold files were written
    assert _files(out) == _files(ref) and (out / 'metrics.json').read_bytes() == (ref / 'metrics.json').read_bytes()
