"""The feature cache: each sample's features computed once per sample and settings, in worker processes, and kept
on disk under a key over everything that changes them, so ablation rows, shards and reruns reuse them and a
changed setting, constant, frame file or line of code never reuses a stale one.

A feature is a pair of module-level functions: compute(s, cfg) -> array, and key(s, cfg) -> the dict of what
changes it. Two are defined here: the network input (pipeline.py) and the LBP-TOP baseline's histograms
(lbptop.py); `features` takes either.
"""
import hashlib
import io
import json
import logging
import os
import re
import time
from pathlib import Path

import numpy as np

from util.files import atomic_write, lock, source_digest

log = logging.getLogger(__name__)
# The modules whose code computes each feature: what they compute is part of its key.
FLOW_MODULES = ('pipeline.py', 'data/frames.py', 'align.py', 'stabilise.py', 'emr.py', 'evm.py',
                'flow.py')
LBPTOP_MODULES = ('data/frames.py', 'align.py', 'lbptop.py')


def flow_input(s, cfg):
    """(3, size, size) float32 network input of a sample (pipeline.run)."""
    import pipeline
    from data.frames import read_frames
    return pipeline.run(s, cfg, read_frames).x


def flow_key(s, cfg):
    """What changes a sample's network input: its identity, the frame files it reads, the input settings (EVM
    only where EMR is on), the pipeline's constants and its code."""
    import pipeline
    settings = {k: getattr(cfg, k) for k in ('align_size', 'no_face', 'landmarks', 'emr', 'flow', 'size', 'apex',
                                             'stabilise')}
    if cfg.emr:
        settings['evm'] = cfg.evm()
        settings['emr_bands'] = cfg.emr_bands
    paths = s.frames[s.onset:] if cfg.apex == 'spot' else [s.frames[i] for i in pipeline.needed(s, cfg)[0]]
    return dict(kind='flow', sample=_identity(s), frames=_stats(paths), settings=settings,
                constants=pipeline.constants(), source=_source(FLOW_MODULES))


def lbptop_input(s, cfg):
    """(1200,) LBP-TOP histograms of a sample (lbptop.clip_features)."""
    import lbptop
    from data.frames import read_frames
    return lbptop.clip_features(read_frames(s.frames[s.onset:]), cfg.align_size, cfg.no_face, cfg.landmarks,
                                str(s.frames[s.onset]))


def lbptop_key(s, cfg):
    """What changes a sample's LBP-TOP histograms."""
    import align
    import lbptop
    return dict(kind='lbptop', sample=_identity(s), frames=_stats(s.frames[s.onset:]),
                settings={k: getattr(cfg, k) for k in ('align_size', 'no_face', 'landmarks')},
                constants=dict(lbptop.SETTINGS, template=align.TEMPLATE), source=_source(LBPTOP_MODULES))


def _identity(s):
    return [s.dataset, s.subject, s.clip, s.fps, s.domain, s.onset, s.apex]


def _stats(paths):
    return [(str(q), os.stat(q).st_size, os.stat(q).st_mtime_ns) for q in paths]


_sources = {}


def _source(modules):
    if modules not in _sources:           # once per process: the code does not change while it runs
        _sources[modules] = source_digest(modules)
    return _sources[modules]


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    raise TypeError(f'digest: cannot put a {type(x).__name__} in a key; pass str, numbers, lists, dicts')


def digest(**parts):
    """sha1 hex digest of the sorted-key JSON of everything that changes a cached result."""
    text = json.dumps(parts, sort_keys=True, default=_jsonable, separators=(',', ':'))
    return hashlib.sha1(text.encode('utf-8')).hexdigest()


def _path(cache_dir, key):
    if not re.fullmatch(r'[0-9A-Za-z_-]{3,}', key):
        raise ValueError(f'cache key must be 3+ letters, digits, _ or - (use digest), got {key!r}')
    return Path(cache_dir) / key[:2] / f'{key}.npy'


def _load(path):
    """The array stored at `path`, or None when there is none. A file that cannot be read (cut short, emptied) is
    removed with a warning naming it, so it is computed again once."""
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        log.warning('%s: unreadable cache file (%s); computing it again', path, e)
        path.unlink(missing_ok=True)
        return None


def cached(cache_dir, key, compute, wait=True):
    """Array stored at cache_dir/key[:2]/key.npy, computed by compute() and written atomically when absent, under a
    claim (an flock on key.lock beside it) so that processes sharing the cache compute it once: a process that finds
    it claimed waits for the file (wait=True) or returns None (wait=False) to compute other samples first. A claim
    dies with its process, so a waiter takes a dead process's sample over and computes it."""
    path = _path(cache_dir, key)
    arr = _load(path)
    if arr is not None:
        return arr
    path.parent.mkdir(parents=True, exist_ok=True)
    claim = lock(path.with_suffix('.lock'), wait)
    if claim is None:
        return None
    try:
        arr = _load(path)                    # written by the process whose claim this one waited for
        if arr is None:
            arr = np.asarray(compute())
            buf = io.BytesIO()
            np.save(buf, arr, allow_pickle=False)
            atomic_write(path, buf.getvalue())       # readers (other shards) see the whole file or none
    finally:
        # Removed while still held: whoever locks this file, or a new one at its name, afterwards finds the array
        # and computes nothing (after a failure, both may compute it: only a sample that failed).
        path.with_suffix('.lock').unlink(missing_ok=True)
        claim.close()
    return arr


def _job(job):
    """(a sample's cached feature, whether this process computed it), None when another process is computing it
    (wait False), or the one-line problem (unreadable or cut-short frame, no face) as a string."""
    from align import FaceNotFound
    from data.frames import FrameError
    s, cfg, cache_dir, key, compute, wait = job
    ran = []
    try:
        arr = cached(cache_dir, key, lambda: ran.append(1) or compute(s, cfg), wait)
    except (FaceNotFound, FrameError, FileNotFoundError) as e:
        return f'{s.dataset} {s.subject} {s.clip}: {e}'
    return None if arr is None else (arr, bool(ran))


def features(samples, cfg, cache_dir, compute=flow_input, key=flow_key, workers=1, quiet=False, skip_bad=False,
             desc='features'):
    """(features stacked (N, ...), the N samples they belong to): compute(s, cfg) once per sample and key, in
    `workers` processes, cached. Samples whose frames or face cannot be used are listed together in one
    DatasetError, or with skip_bad left out and listed in a warning."""
    from data.releases import DatasetError
    from util.workers import imap
    keys = [digest(**key(s, cfg)) for s in samples]
    out = [_load(_path(cache_dir, k)) for k in keys]
    todo = [i for i, a in enumerate(out) if a is None]
    t0 = time.time()
    # The samples no other process has claimed first, then those it had: waited for and read, each as soon as its
    # claim is released (its file written, or its process dead, when this one computes it).
    first = imap(_job, [(samples[i], cfg, cache_dir, keys[i], compute, False) for i in todo], workers, desc,
                 quiet=quiet)
    busy = [i for i, a in zip(todo, first) if a is None]
    later = imap(_job, [(samples[i], cfg, cache_dir, keys[i], compute, True) for i in busy], workers,
                 f'{desc} (claimed by other processes)', quiet=quiet)
    here = 0
    for i, a in [*zip(todo, first), *zip(busy, later)]:
        if a is not None:
            out[i] = a if isinstance(a, str) else a[0]
            here += not isinstance(a, str) and a[1]
    problems = [a for a in out if isinstance(a, str)]
    if problems:
        head = f'{len(problems)} sample{"s" * (len(problems) > 1)} whose frames or face cannot be used'
        lines = ''.join(f'\n  {p}' for p in problems)
        if not skip_bad:
            raise DatasetError(f'{head} (replace the files named, or pass --skip-bad to leave these samples '
                               f'out):{lines}')
        log.warning('%s, left out (--skip-bad):%s', head, lines)
    kept = [i for i, a in enumerate(out) if not isinstance(a, str)]
    log.info('%s: %d samples, %d computed here, %d by other processes sharing the cache, in %.1f s', desc, len(kept),
             here, len(todo) - len(problems) - here, time.time() - t0)
    return np.stack([out[i] for i in kept]), [samples[i] for i in kept]
