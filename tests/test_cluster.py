"""What a cluster's compute node gives a run: the CPUs its job may use (not the node's), a file system whose locks
may not work (said in one line), and the recipe of docs/slurm.md run under a fake scheduler."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import mer
from util import files

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
from engine import experiment, runfolder
from util import workers
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


FAKE_SBATCH = '''#!{python}
"""A fake sbatch: records its options, runs the batch script at once (an array's tasks one after another, with
SLURM_ARRAY_TASK_ID set), refuses a dependency on a job that did not succeed, and prints the job id (--parsable)."""
import json, os, subprocess, sys
log = os.environ['FAKE_SBATCH_LOG']
calls = [json.loads(line) for line in open(log)] if os.path.exists(log) else []
args = sys.argv[1:]
opts = []
while args[0].startswith('--'):
    opts.append(args.pop(0))
job = 100 + len(calls)
call = dict(id=job, opts=opts, script=args[0], args=args[1:], status=[])
for o in opts:
    if o.startswith('--dependency=afterok:'):
        need = int(o.split(':')[1])
        assert any(c['id'] == need and c['status'] and not any(c['status']) for c in calls), 'dependency not met'
array = next((o.split('=')[1] for o in opts if o.startswith('--array=')), None)
tasks = range(int(array.split('-')[0]), int(array.split('-')[1]) + 1) if array else [None]
for t in tasks:
    env = dict(os.environ, SLURM_JOB_ID=str(job), **({{'SLURM_ARRAY_TASK_ID': str(t)}} if t else {{}}))
    with open(f'{{log}}.{{job}}_{{t}}.out', 'w') as out:          # the job's output goes to its file, as SLURM's
        call['status'].append(subprocess.run(['bash', *args], env=env, stdout=out, stderr=out).returncode)
with open(log, 'a') as fh:
    fh.write(json.dumps(call) + '\\n')
print(job)
'''


def test_the_slurm_recipe_runs_under_a_fake_scheduler(demo_root, tmp_path, feature_cache):
    """tools/slurm.sh as docs/slurm.md gives it: the array over the folds, each task its shard, the merge a job
    that depends on the array and writes the tables; without an activated environment, one line."""
    root = TESTS.parent
    (tmp_path / 'bin').mkdir()
    sbatch = tmp_path / 'bin' / 'sbatch'
    sbatch.write_text(FAKE_SBATCH.format(python=sys.executable))
    sbatch.chmod(0o755)
    log, out = tmp_path / 'sbatch.jsonl', tmp_path / 'run'
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'CONDA_PREFIX', 'PYTHON')}
    env.update(PATH=f'{tmp_path / "bin"}:{env["PATH"]}', FAKE_SBATCH_LOG=str(log), SHARDS='2')
    args = ['--data', str(demo_root / 'megc'), '--ckplus', str(demo_root / 'ck'), '--cache', str(feature_cache),
            *FAST, '--out', str(out)]
    bare = subprocess.run(['bash', 'tools/slurm.sh', *args], cwd=root, env=env, capture_output=True, text=True)
    assert bare.returncode == 2 and bare.stderr.count('\n') == 1 and 'source .venv/bin/activate' in bare.stderr
    assert not log.exists()

    r = subprocess.run(['bash', 'tools/slurm.sh', *args], cwd=root, env=dict(env, PYTHON=sys.executable),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    array, merge = [json.loads(line) for line in log.read_text().splitlines()]
    assert array['status'] == [0, 0] and merge['status'] == [0]
    assert {'--array=1-2', '--requeue', '--signal=B:USR1@300', '--parsable'} <= set(array['opts'])
    assert f'--dependency=afterok:{array["id"]}' in merge['opts']
    assert array['args'] == [sys.executable, '2', *args] and merge['args'] == [sys.executable, 'merge', *args]
    assert len(list((out / 'folds').glob('*.csv'))) == 6 and (out / 'metrics.json').is_file()
    starts = [line for line in (out / 'run.log').read_text().splitlines() if line.startswith('--- ')]
    assert [s.endswith(f'--folds {i}/2') for i, s in enumerate(starts, 1)] == [True, True, False]
    assert f'job array {array["id"]} (2 shards); merge: job {merge["id"]}' in r.stdout
    assert 'Table I' in Path(f'{log}.{merge["id"]}_None.out').read_text()


def test_the_spotting_recipe_runs_one_task_per_video_and_merges_and_scores_them(tmp_path):
    """tools/slurm_spot.sh: with --data, one array task per video of the releases writing its own file, and the
    merge (a job depending on the array) joining them into all.csv and printing MEGC's scores; with LIST, one task
    per line."""
    from data import synth
    from video import outputs
    root = TESTS.parent
    (tmp_path / 'bin').mkdir()
    sbatch = tmp_path / 'bin' / 'sbatch'
    sbatch.write_text(FAKE_SBATCH.format(python=sys.executable))
    sbatch.chmod(0o755)
    long_root = synth.build_long(tmp_path / 'long', casme_videos=2, casme_s=10.0, samm_videos=0)
    log, spots = tmp_path / 'sbatch.jsonl', tmp_path / 'spots'
    env = dict(os.environ, PATH=f'{tmp_path / "bin"}:{os.environ["PATH"]}', FAKE_SBATCH_LOG=str(log),
               PYTHON=sys.executable)
    r = subprocess.run(['bash', 'tools/slurm_spot.sh', str(spots), '--data', str(long_root), '-q'], cwd=root, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    array, merge = [json.loads(line) for line in log.read_text().splitlines()]
    assert '--array=1-2' in array['opts'] and array['status'] == [0, 0] and merge['status'] == [0]
    assert f'--dependency=afterok:{array["id"]}' in merge['opts']
    infos, parts = zip(*(outputs.read(spots / f'part_{i}.csv') for i in (1, 2)))
    assert all(f'--part {i}/2' in x['command'] for i, x in enumerate(infos, 1))
    assert [len({x['video'] for x in p}) <= 1 for p in parts] == [True, True]     # one video a task
    _, merged = outputs.read(spots / 'all.csv')
    assert merged == parts[0] + parts[1] and merged
    out = Path(f'{log}.{merge["id"]}_None.out').read_text()
    assert '| overall |' in out and 'F1' in out                               # scored against the sheets

    # LIST: one task per line, the merge unscored
    video = tmp_path / 'v.avi'
    rng = np.random.default_rng(0)
    face, lm = synth.identity(synth.photos()[1], rng)
    frames = synth.render(face, synth.deformation(lm, synth.POS, face.shape[:2], 6.0), synth.profile(120, 60, 66, 72),
                          rng, noise=1.0)
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 30.0, frames[0].shape[1::-1])
    for f in frames:
        w.write(f)
    w.release()
    copy = tmp_path / 'w.avi'
    copy.write_bytes(video.read_bytes())
    (tmp_path / 'list.txt').write_text(f'{video}\n{copy}\n')
    log.unlink()
    r = subprocess.run(['bash', 'tools/slurm_spot.sh', str(tmp_path / 'listed'), '-q'], cwd=root,
                       env=dict(env, LIST=str(tmp_path / 'list.txt')), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    array, merge = [json.loads(line) for line in log.read_text().splitlines()]
    assert array['status'] == [0, 0] and merge['status'] == [0]
    _, merged = outputs.read(tmp_path / 'listed' / 'all.csv')
    assert [(x['video'], x['kind']) for x in merged] == [('v.avi', 'micro'), ('w.avi', 'micro')]
    assert merged[0]['onset'] <= 66 <= merged[0]['offset']
