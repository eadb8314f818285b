"""The run folder of one row of Table I: config.json, a file per finished fold, resume, shards, locks shared by
several processes, the training processes on CPU, the final model. It calls the method (loso.plan_folds,
graphs.train_folds, loso.metrics) and keeps what a killed or sharded run needs to go on.

A fold's predictions go to folds/<key>.csv as soon as it finishes, so a run stopped at any point resumes where it
was, and `--folds i/n` shards of one run folder (a cluster job array) merge into the same result as a single run.
The metrics come from the predictions in memory, with the fold files of folds trained elsewhere read back.
"""
import contextlib
import csv
import json
import logging
import time
from pathlib import Path

import numpy as np

import config
import loso
import train
from engine import checkpoint, graphs
from util.files import atomic_write, code_version, lock
from util.workers import processes
from results import report

log = logging.getLogger(__name__)
# logit_<class>: the joint classifier's logits after the last epoch (results/calibration.py); empty for a baseline.
FOLD_COLUMNS = ('dataset', 'subject', 'clip', 'label', 'pred', 'pred_selected',
                *(f'logit_{c}' for c in config.CLASSES))


def shard_of(specs, shard):
    """The folds of shard i of n: every n-th fold from the i-th, so that the shards cover each fold once."""
    i, n = shard
    return specs[i - 1::n]


def write_fold(out, key, rows, epochs=None):
    """folds/<key>.csv (FOLD_COLUMNS) and folds/<key>.log, its training log. The log goes first: a fold file on
    disk means the fold is finished."""
    if epochs is not None:
        atomic_write(out / 'folds' / f'{key}.log', report.train_log_csv([(key, epochs)]))
    lines = [','.join(FOLD_COLUMNS)] + [','.join(str(r.get(c, '')) for c in FOLD_COLUMNS) for r in rows]
    atomic_write(out / 'folds' / f'{key}.csv', '\n'.join(lines) + '\n')
    checkpoint.remove(out / 'folds', key)


def check_fold_file(path, expected):
    """'' when a fold file holds exactly the fold's test clips `expected` {(dataset, subject, clip): label} with
    predictions 0-2, else what is wrong with it."""
    try:
        with open(path, newline='') as fh:
            rows = list(csv.DictReader(fh))
        got = {}
        for r in rows:
            got[r['dataset'], r['subject'], r['clip']] = (int(r['label']), int(r['pred']), int(r['pred_selected']))
    except (OSError, ValueError, TypeError, KeyError, csv.Error) as e:
        return f'unreadable ({type(e).__name__})'
    if len(rows) != len(expected) or set(got) != set(expected):
        return f'{len(rows)} rows for the fold\'s {len(expected)} test clips'
    if any(got[k][0] != v or not {got[k][1], got[k][2]} <= {0, 1, 2} for k, v in expected.items()):
        return 'labels or predictions that do not match the fold'
    return ''


def read_fold(out, key):
    """(rows with int label/pred, per-epoch log or None) of a finished fold's files, or None if not finished."""
    p = out / 'folds' / f'{key}.csv'
    if not p.is_file():
        return None
    with open(p, newline='') as fh:
        rows = [dict(r, label=int(r['label']), pred=int(r['pred']), pred_selected=int(r['pred_selected']),
                     **{k: float(v) for k, v in r.items() if k.startswith('logit_') and v})
                for r in csv.DictReader(fh)]
    epochs = None
    lp = out / 'folds' / f'{key}.log'
    if lp.is_file():
        with open(lp, newline='') as fh:
            epochs = [{c: int(v) if c == 'epoch' else float(v) for c, v in r.items() if c != 'fold'}
                      for r in csv.DictReader(fh)]
    return rows, epochs


def check_config(out, settings, machine=None):
    """Writes config.json, or checks that a run being resumed or merged used the same result settings (a dict;
    for a network row, config.result_settings of its Config and the data it ran on). `machine` (the precision
    --precision resolved to, and the device's name) is recorded beside them; a resume in another precision is
    warned of, as its folds' numbers differ."""
    path = out / 'config.json'
    keep = dict(settings)
    if path.is_file():
        old = json.loads(path.read_text())
        before = old.pop('machine', None)
        if machine and before and before.get('precision') != machine['precision']:
            log.warning('%s: its folds so far were trained in %s on %s; this process trains in %s on %s, so the '
                        'folds differ in precision (pass --precision %s to match them)', path, before['precision'],
                        before.get('device'), machine['precision'], machine['device'], before['precision'])
        version = old.pop('code_version', None)
        diff = sorted(k for k in set(old) | set(keep) if old.get(k) != keep.get(k))
        if diff:
            raise SystemExit(f'{path}: this run folder was made with other settings ({", ".join(diff)}); '
                             'pass the same flags to resume it, or a new --out')
        if version != code_version():
            log.warning('%s was written by code version %s; this is %s', path, version, code_version())
    else:
        atomic_write(path, json.dumps(dict(keep, code_version=code_version(), **({'machine': machine} if machine else
                                                                                  {})), indent=1, sort_keys=True))


def fold_claims(out):
    """claim(key) for graphs.train_folds: True when this process may train the fold, holding an exclusive lock on
    folds/<key>.lock until it ends, so that several processes given the same run folder share its folds; False
    when another process holds the lock or the fold is already finished. A lock dies with its process."""
    held = []

    def claim(key):
        fh = lock(out / 'folds' / f'{key}.lock')
        if fh is None:
            log.info('%s: another process is training this fold; skipped here', key)
            return False
        if (out / 'folds' / f'{key}.csv').is_file():
            fh.close()
            return False
        held.append(fh)
        return True
    return claim


def one_torch_thread():
    """Every CPU training process, this one too, trains on one thread: oneDNN splits a convolution's reductions
    between threads, so a fold trained on two threads ends with other losses and weights than on one (measured,
    BENCHMARKS.md), and --jobs, shards or a process resumed elsewhere must not change a result."""
    import torch
    torch.set_num_threads(1)


def _worker(specs, data, n_samples, cfg, device, weights, out, counter, queue):
    """A training process: trains its folds one by one on one thread, sending each result to the parent, and ends
    with 'done', or with 'stopped' and the checkpoints it saved when a stop signal came (from the parent, from the
    job's scheduler, or at the parent's death)."""
    from util.workers import worker_setup
    worker_setup()
    checkpoint.catch_stop_signals(at_once=False)
    one_torch_thread()
    # A spawned process starts without the parent's logging: its warnings and 'resumed at step' lines, as mer.py's.
    logging.basicConfig(level=logging.WARNING if cfg.quiet else logging.INFO,
                        format='%(asctime)s %(name)s: %(message)s', datefmt='%H:%M:%S')

    class Count:
        def update(self, n):
            with counter.get_lock():
                counter.value += n
    try:
        for res in graphs.train_folds(specs, data, n_samples, cfg, device, weights, progress=Count(),
                                      claim=fold_claims(out), keep=out / 'folds'):
            queue.put(('fold', res))
        queue.put(('done', None))
    except checkpoint.Stopped as e:
        queue.put(('stopped', e.args[1]))
    except BaseException as e:     # the parent re-raises it with the fold's context
        queue.put(('error', f'{type(e).__name__}: {e}'))


def _train_in_processes(specs, data, n_samples, cfg, device, weights, bar, jobs, out):
    """Yields train_folds' results as `jobs` processes of one thread each finish their folds.

    Processes of one thread each train more samples/s than one process of as many threads (BENCHMARKS.md): a
    64-px ResNet18 step is too small to keep two threads busy. The inputs are shared
    with the workers through shared memory, not copied. A fold's result does not depend on its process.
    """
    import torch.multiprocessing as tmp

    from util.workers import starting
    ctx = tmp.get_context('spawn')
    with starting():              # the resource tracker and the workers are born ignoring Ctrl-C
        counter, queue = ctx.Value('q', 0), ctx.Queue()
        data = tuple(t.share_memory_() for t in data)
        procs = [ctx.Process(target=_worker, args=(specs[j::jobs], data, n_samples, cfg, device, weights, out,
                                                   counter, queue), daemon=True) for j in range(jobs)]
        for p in procs:
            p.start()
    kept, stopping = [], False
    try:
        left = jobs                  # each worker ends with 'done' or 'stopped' (it may skip folds another holds)
        while left:
            if checkpoint.requested() and not stopping:
                stopping = True       # each worker saves its fold at its next step; their results still come
                for p in procs:
                    if p.is_alive():
                        p.terminate()
            try:
                kind, res = queue.get(timeout=0.25)
            except Exception:     # queue.Empty: show progress, and notice a worker that died without a word
                bar.update(counter.value - bar.n)
                if not any(p.is_alive() for p in procs) and queue.empty():
                    if stopping or checkpoint.requested():    # killed while starting, before their handler
                        stopping = True
                        break
                    codes = ', '.join(str(p.exitcode) for p in procs)
                    raise RuntimeError(f'a training process ended without its results (exit codes {codes}; a '
                                       'negative one is the signal that killed it; out of memory?)') from None
                continue
            if kind == 'error':
                raise RuntimeError(f'a training process failed: {res}')
            if kind in ('done', 'stopped'):
                left -= 1
                kept += res or []
                continue
            yield res
        bar.update(counter.value - bar.n)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
    if stopping:
        raise checkpoint.Stopped(checkpoint.requested(), kept, None, None)


def _prepare(out, meta, shard, protocol):
    """(every fold's spec, the folds of this shard still to run): damaged fold files are removed first."""
    (out / 'folds').mkdir(parents=True, exist_ok=True)
    specs = loso.PROTOCOLS[protocol](meta)
    for key, _, test in specs:         # a damaged fold file is trained again, never merged short
        path = out / 'folds' / f'{key}.csv'
        if path.is_file():             # killed between the fold file and its checkpoint's removal
            checkpoint.remove(out / 'folds', key)
        why = path.is_file() and check_fold_file(path, {(meta[i].dataset, meta[i].subject, meta[i].clip):
                                                          meta[i].label for i in test})
        if why:
            log.warning('%s: %s; removing it, the fold will be trained again', path, why)
            path.unlink()
    return specs, [s for s in shard_of(specs, shard) if not (out / 'folds' / f'{s[0]}.csv').is_file()]


def _fold_rows(meta, test, pred, sel, logits=None):
    rows = [dict(dataset=meta[i].dataset, subject=meta[i].subject, clip=meta[i].clip, label=meta[i].label,
                 pred=int(p), pred_selected=int(s)) for i, p, s in zip(test, pred, sel)]
    for r, z in zip(rows, [] if logits is None else logits):
        r.update({f'logit_{c}': round(float(v), 5) for c, v in zip(config.CLASSES, z)})
    return rows


def _finish(out, specs, done, protocol, n_boot):
    """The run's metrics (as metrics.json) with its prediction rows under 'rows', once every fold is done, else
    None (other shards still to come): `done` {key: (rows, log)} holds the folds finished here, the fold files
    the others."""
    rows, logs, missing = [], [], []
    for key, _, _ in specs:
        fold = done.get(key) or read_fold(out, key)
        if fold is None:
            missing.append(key)
            continue
        rows += fold[0]
        if fold[1] is not None:
            logs.append((key, fold[1]))
    if missing:
        log.info('%d folds still missing (other shards or processes): %s', len(missing), ' '.join(missing[:10]))
        return None
    return dict(report.write_run(out, rows, logs, protocol, n_boot), rows=rows)


@contextlib.contextmanager
def stopped_in(out, specs=None):
    """checkpoint.Stopped, on its way up, told the run folder and how many of the folds `specs` are finished
    (None, unsaid, without specs: the final model's training)."""
    try:
        yield
    except checkpoint.Stopped as e:
        finished = None if specs is None else sum((out / 'folds' / f'{key}.csv').is_file() for key, _, _ in specs)
        raise checkpoint.Stopped(e.args[0], e.args[1], out, finished) from None


def run(x, meta, cfg, out, weights=None, shard=(1, 1), protocol='loso', n_boot=1000):
    """The folds of `protocol` (loso.PROTOCOLS) over the micro samples in `meta`; writes the run folder; returns
    _finish's metrics and rows, or None if folds remain. n_boot: bootstrap draws of the intervals."""
    import torch
    from tqdm import tqdm
    out = Path(out)
    specs, todo = _prepare(out, meta, shard, protocol)
    device = graphs.resolve_device(cfg.device)
    n_micro = sum(m.domain == 'micro' for m in meta)
    n_samples = len(meta)
    data = train.fold_data(x, meta, device)
    cuda = device.type == 'cuda'
    if cuda:
        torch.backends.cudnn.benchmark = True     # every fold has the same shapes: choose the kernels once
    else:
        one_torch_thread()
    jobs = 1 if cuda else max(1, min(processes(cfg.jobs), len(todo)))
    streams = cfg.streams or graphs.CUDA_STREAMS
    log.info('%s: %d folds (%d to train here), %d micro + %d macro samples; %s, %s; backbone lr %g, heads lr %g',
             protocol.upper(), len(specs), len(todo), n_micro, n_samples - n_micro,
             f'{device}, {streams} folds at a time as CUDA graphs on their own streams' if cuda else
             f'{device}, {jobs} training process{"es" * (jobs > 1)}', 'bf16' if train.bf16(cfg, device) else 'fp32',
             cfg.backbone_lr(), cfg.lr_heads)
    steps = train.steps_per_epoch(n_samples, cfg.batch_size) * cfg.epochs
    by_key = {k: te for k, _, te in specs}
    t0 = time.time()
    done = {}
    # A stop signal here only asks training to stop at its next step, where every fold's state is whole.
    with tqdm(total=steps * len(todo), unit='fold-step', disable=cfg.quiet) as bar, stopped_in(out, specs), \
            checkpoint.deferred():
        if jobs == 1:
            results = graphs.train_folds(todo, data, n_samples, cfg, device, weights, streams, progress=bar,
                                         claim=fold_claims(out), keep=out / 'folds')
        else:
            results = _train_in_processes(todo, data, n_samples, cfg, device, weights, bar, jobs, out)
        for key, pred, sel, epochs, logits in results:
            rows = _fold_rows(meta, by_key[key], pred, sel, logits)
            write_fold(out, key, rows, epochs)
            done[key] = rows, epochs
    if todo:
        log.info('training: %d folds in %.1f s', len(todo), time.time() - t0)
    return _finish(out, specs, done, protocol, n_boot)


def run_baseline(x, meta, out, predict, shard=(1, 1), protocol='loso', n_boot=1000):
    """A classical baseline on the micro samples of `meta` (macro samples never enter it), with the same folds
    and run folder as `run`: predict(x_train, y_train, x_test) gives one fold's predictions."""
    out = Path(out)
    meta = [m for m in meta if m.domain == 'micro']
    specs, todo = _prepare(out, meta, shard, protocol)
    y = np.array([m.label for m in meta])
    t0 = time.time()
    claim = fold_claims(out)
    done = {}
    for key, tr, te in todo:
        if not claim(key):
            continue
        pred = predict(x[tr], y[tr], x[te])
        rows = _fold_rows(meta, te, pred, pred)
        write_fold(out, key, rows)
        done[key] = rows, None
    if todo:
        log.info('baseline: %d folds in %.1f s', len(todo), time.time() - t0)
    return _finish(out, specs, done, protocol, n_boot)


def train_final(x, meta, cfg, weights=None, keep=None):
    """(one PartNet trained on every sample of `meta`, micro and macro, with the row's settings; its per-epoch log):
    the model that --save-model writes, trained after (or, with --final-only, instead of) the LOSO. `keep`: the
    folder of its checkpoint (graphs.train_wave), to be called inside checkpoint.deferred()."""
    from tqdm import tqdm
    device = graphs.resolve_device(cfg.device)
    if device.type == 'cpu':
        one_torch_thread()
    n_samples = len(meta)
    data = train.fold_data(x, meta, device)
    t0 = time.time()
    with tqdm(total=train.steps_per_epoch(n_samples, cfg.batch_size) * cfg.epochs, unit='step', desc='final model',
              disable=cfg.quiet) as bar:
        net, epochs = graphs.train_all(np.arange(n_samples), data, n_samples, cfg, device, weights, progress=bar,
                                       keep=keep)
    log.info('final model: %d samples (%d macro), %d epochs in %.1f s; last epoch training accuracy %.3f', n_samples,
             int(data[2].sum()), cfg.epochs, time.time() - t0, epochs[-1]['acc'])
    return net.cpu(), epochs
