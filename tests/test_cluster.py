"""What a cluster's compute node gives a run: the CPUs its job may use (not the node's), a file system whose locks
may not work (said in one line), and the recipe of docs/slurm.md run under a fake scheduler."""
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mer
from engine import files

TESTS = Path(__file__).resolve().parent
FAST = ['--init', 'random', '--epochs', '1', '--batch-size', '16', '--size', '36', '--align-size', '64',
        '--workers', '1', '--jobs', '1', '-q']


@pytest.mark.skipif(not hasattr(os, 'sched_setaffinity') or len(os.sched_getaffinity(0)) < 2,
                    reason='needs CPU affinity (Linux) and at least 2 usable CPUs to restrict')
def test_worker_and_training_processes_follow_the_cpus_this_process_may_use(tmp_path):
    """A process restricted to one CPU (as SLURM's --cpus-per-task=1 restricts it) starts one feature worker and
    one training process by default, and says so, however many CPUs the machine has."""
    code = f'''
import logging, os, sys
os.sched_setaffinity(0, {{min(os.sched_getaffinity(0))}})
sys.path.insert(0, {str(TESTS)!r})
logging.basicConfig(level=logging.INFO, format='%(message)s')
import toy_run
from engine import experiment, runfolder, workers
print(workers.usable_cpus(), workers.processes(0), workers.processes(3))
cfg = toy_run.settings(jobs=0, epochs=1)
print(experiment.cpus_line(cfg))
runfolder.run(*toy_run.data(), cfg, {str(tmp_path / 'run')!r})
'''
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == '1 1 3'
    assert lines[1].startswith(f"1 of this machine's {os.cpu_count()} CPUs usable by this process")
    assert '1 feature worker processes, 1 training processes at most' in lines[1]
    assert 'cpu, 1 training process, ' in r.stderr                  # 2 folds: two processes on the whole node


def test_a_file_system_without_locks_is_named_in_one_line(demo_root, tmp_path, feature_cache, monkeypatch, caplog):
    """flock failing with ENOLCK (NFS without its lock service): one warning line naming the folders, what is
    wrong and what to do; the run still runs, each process doing all the work it is given."""
    import fcntl

    def no_locks(fh, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(fcntl, 'flock', no_locks)
    assert files.lock_problem(tmp_path) == f'flock: {os.strerror(errno.ENOLCK)}'
    assert not list(tmp_path.iterdir())                                      # the test file is gone
    out = tmp_path / 'run'
    assert mer.main(['--data', str(demo_root / 'megc'), '--ckplus', str(demo_root / 'ck'), '--cache',
                     str(feature_cache), *FAST, '--out', str(out), '--folds', '1/6']) == 0
    said = [r.getMessage() for r in caplog.records if 'file locks do not work' in r.getMessage()]
    assert len(said) == 1 and '\n' not in said[0], said
    assert said[0].startswith(f'{out} and {feature_cache}: file locks do not work here (flock: '
                             f'{os.strerror(errno.ENOLCK)}), so processes sharing them')
    assert '--out' in said[0] and 'docs/slurm.md' in said[0]
    assert len(list((out / 'folds').glob('*.csv'))) == 1
    monkeypatch.undo()
    assert files.lock_problem(tmp_path) == ''
