"""A sample's network input (paper §III.A, §III.C), the one per-sample pipeline, cached on disk:

    frames --align.py--> aligned clip --evm.py (EMR)--> onset, apex --flow.py--> (3, size, size) u, v, strain

EMR has two roles (§III.C): a micro-expression's apex is magnified by Eulerian Video Magnification of the clip from
onset to apex; a macro-expression's apex is replaced by the frame halfway from onset to apex. Both live in
`emr_frames` (which frames a sample needs) and `emr_apex` (the apex image the flow sees).

Every run, figure, benchmark and prediction goes through `sample_input`; the LOSO run caches its results by a key
over everything that changes an input (the sample, its frame files, the settings, the pipeline's constants and
the source of the modules that compute it), so editing any of them never reuses a stale feature.
"""
import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from config import ROOT, worker_setup

log = logging.getLogger(__name__)
# The modules whose code computes an input: their source is part of the cache key.
PIPELINE = ('inputs.py', 'align.py', 'evm.py', 'flow.py', 'spot.py')
# The same for the LBP-TOP baseline's features.
LBPTOP_PIPELINE = ('inputs.py', 'align.py', 'lbptop.py')


def emr_indices(s, cfg):
    """(indices into s.frames the sample needs, index of its apex among them): EMR's two roles (§III.C)."""
    import evm
    # The magnifier needs the clip from onset up to apex, unless its band is the change since onset.
    if cfg.emr and s.domain == 'micro' and not evm.onset_change(**cfg.evm()):
        return list(range(s.onset, s.apex + 1)), s.apex - s.onset
    apex = evm.middle_frame_index(s.onset, s.apex) if cfg.emr and s.domain == 'macro' else s.apex
    return [s.onset, apex], 1


def emr_frames(s, cfg):
    """(frame paths the sample needs, index of its apex among them): EMR's two roles (§III.C)."""
    idx, apex = emr_indices(s, cfg)
    return tuple(s.frames[i] for i in idx), apex


def align_frames(frames, cfg, name):
    """(T, align_size, align_size, 3) uint8: frames warped by the onset's similarity (§III.A), rigid head motion
    removed under cfg.stabilise."""
    import align
    return align.align_clip(frames, cfg.align_size, name=name, no_face=cfg.no_face,
                            landmarks_path=cfg.landmarks or None, stabilise=cfg.stabilise)


def aligned_clip(s, cfg):
    """(T, align_size, align_size, 3) uint8: the frames of emr_frames warped by one similarity (§III.A)."""
    import align
    paths, _ = emr_frames(s, cfg)
    return align_frames(align.read_frames(paths), cfg, str(paths[0]))


def spotted(full, s):
    """The sample with its apex spotted (spot.py) on `full`, its aligned clip from the onset to its last frame."""
    import spot
    return dataclasses.replace(s, apex=s.onset + spot.apex(full, s.fps))


def emr_clip(full, s, cfg):
    """The frames emr_frames names, taken from `full`, the sample's aligned clip from its onset on."""
    idx, _ = emr_indices(s, cfg)
    return full[[i - s.onset for i in idx]]


def emr_apex(clip, s, cfg):
    """The apex image the flow is computed to: the magnified apex of a micro sample under EMR, else the apex."""
    import evm
    _, apex = emr_frames(s, cfg)
    if cfg.emr and s.domain == 'micro':
        return evm.magnified_apex(clip, 0, apex, s.fps, **cfg.evm())
    return clip[apex]


def onset_apex_flow(clip, s, cfg):
    """(the apex image the flow sees, (H, W, 2) float32 onset -> (EMR) apex flow) of a sample's aligned emr_frames."""
    import cv2

    import flow
    seen = emr_apex(clip, s, cfg)
    gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (clip[0], seen)]
    return seen, flow.optical_flow(*gray, method=cfg.flow)


def clip_input(clip, s, cfg):
    """(3, size, size) float32 network input from the sample's aligned emr_frames: (EMR) -> flow -> u, v, strain."""
    import flow
    return flow.encode(onset_apex_flow(clip, s, cfg)[1], cfg.size)


def sample_input(s, cfg):
    """(3, size, size) float32 network input of one sample: align -> (spot) -> (EMR) -> onset->apex flow -> u, v,
    strain."""
    if cfg.apex == 'spot':        # the whole clip from the onset is aligned, for the spotter to choose from
        import align
        full = align_frames(align.read_frames(s.frames[s.onset:]), cfg, str(s.frames[s.onset]))
        s = spotted(full, s)
        return clip_input(emr_clip(full, s, cfg), s, cfg)
    return clip_input(aligned_clip(s, cfg), s, cfg)


# ----------------------------------------------------------------------------------------------- the cache
def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    raise TypeError(f'cache_key: cannot put a {type(x).__name__} in a key; pass str, numbers, lists, dicts')


def digest(**parts):
    """sha1 hex digest of the sorted-key JSON of everything that changes a cached result."""
    text = json.dumps(parts, sort_keys=True, default=_jsonable, separators=(',', ':'))
    return hashlib.sha1(text.encode('utf-8')).hexdigest()


def pipeline_constants(kind='flow'):
    """The pipeline's fixed constants: flow parameters, the input's normalisation, the alignment template (or,
    for the LBP-TOP baseline, its radii, points, blocks and TIM length)."""
    import align
    if kind == 'lbptop':
        import lbptop
        return dict(radii=lbptop.RADII, points=lbptop.POINTS, blocks=lbptop.BLOCKS, tim=lbptop.TIM_FRAMES,
                    template=align.TEMPLATE)
    import flow
    import spot
    return dict(tvl1=flow.TVL1_DEFAULTS, farneback=flow.FARNEBACK_DEFAULTS, encode=flow.ENCODE,
                template=align.TEMPLATE, stable_box=align.STABLE_BOX, head_iterations=align.HEAD_ITERATIONS,
                spot=spot.SPOT)


def pipeline_source(kind='flow'):
    """sha1 of the source of the modules that compute an input."""
    files = LBPTOP_PIPELINE if kind == 'lbptop' else PIPELINE
    return hashlib.sha1(b''.join((ROOT / f).read_bytes() for f in files)).hexdigest()


def input_settings(cfg, kind='flow'):
    """The settings of cfg that change a sample's input (EVM only where it is used)."""
    keys = ('align_size', 'no_face', 'landmarks') + (() if kind == 'lbptop' else ('emr', 'flow', 'size', 'apex',
                                                                                   'stabilise'))
    out = {k: getattr(cfg, k) for k in keys}
    if kind == 'flow' and cfg.emr:
        out['evm'] = cfg.evm()
    return out


def sample_features(s, cfg, kind='flow'):
    """The network input of a sample (kind 'flow'), or its LBP-TOP histograms (kind 'lbptop', the baseline)."""
    if kind == 'lbptop':
        import lbptop
        return lbptop.clip_features(s, cfg.align_size, cfg.no_face, cfg.landmarks)
    return sample_input(s, cfg)


def cache_key(s, cfg, constants=None, source=None, kind='flow'):
    """Key of one sample's input: its identity, its frame files, the settings, the constants and the code."""
    paths = s.frames[s.onset:] if kind == 'lbptop' or cfg.apex == 'spot' else emr_frames(s, cfg)[0]
    stats = [(str(q), os.stat(q).st_size, os.stat(q).st_mtime_ns) for q in paths]
    return digest(kind=kind, sample=[s.dataset, s.subject, s.clip, s.fps, s.domain, s.onset, s.apex],
                  frames=stats, settings=input_settings(cfg, kind), constants=constants or pipeline_constants(kind),
                  source=source or pipeline_source(kind))


def _cache_path(cache_dir, key):
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


def cached(cache_dir, key, compute):
    """Array stored at cache_dir/key[:2]/key.npy, computed by compute() and written atomically when absent."""
    path = _cache_path(cache_dir, key)
    arr = _load(path)
    if arr is not None:
        return arr
    arr = np.asarray(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    # A temp file beside the target plus os.replace: readers (other shards) see the whole file or none.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{key}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as fh:
            np.save(fh, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return arr


def _cached_input(job):
    """A sample's cached input, or the one-line problem (unreadable or cut-short frame, no face) as a string."""
    import cv2

    import align
    cv2.setNumThreads(1)      # one process per core: no nested thread pools
    s, cfg, cache, key, kind = job
    try:
        return cached(cache, key, lambda: sample_features(s, cfg, kind))
    except (align.FaceNotFound, align.FrameError, FileNotFoundError) as e:
        return f'{s.dataset} {s.subject} {s.clip}: {e}'


def features(samples, cfg, cache, workers=1, quiet=False, skip_bad=False, kind='flow'):
    """(inputs (N, 3, size, size) float32, the N samples they belong to): computed once per sample and settings,
    in parallel, then cached. Samples whose frames or face cannot be used are listed together in one DatasetError,
    or with skip_bad left out and listed in a warning. kind 'lbptop': the baseline's (N, 1200) histograms."""
    from tqdm import tqdm

    from data import DatasetError
    constants, source = pipeline_constants(kind), pipeline_source(kind)
    keys = [cache_key(s, cfg, constants, source, kind) for s in samples]
    out = [_load(_cache_path(cache, k)) for k in keys]
    todo = [i for i, a in enumerate(out) if a is None]
    jobs = [(samples[i], cfg, cache, keys[i], kind) for i in todo]
    t0 = time.time()
    desc = 'align+TIM+LBP-TOP' if kind == 'lbptop' else 'align+EMR+flow' if cfg.emr else 'align+flow'
    if workers > 1 and len(jobs) > 1:       # processes only for what the cache does not hold
        with get_context('spawn').Pool(min(workers, len(jobs)), worker_setup) as pool:
            done = list(tqdm(pool.imap(_cached_input, jobs, chunksize=2), total=len(jobs), unit='clip', desc=desc,
                             disable=quiet))
    else:
        done = [_cached_input(j) for j in tqdm(jobs, unit='clip', desc=desc, disable=quiet or not jobs)]
    for i, a in zip(todo, done):
        out[i] = a
    problems = [a for a in out if isinstance(a, str)]
    if problems:
        head = f'{len(problems)} sample{"s" * (len(problems) > 1)} whose frames or face cannot be used'
        lines = ''.join(f'\n  {p}' for p in problems)
        if not skip_bad:
            raise DatasetError(f'{head} (replace the files named, or pass --skip-bad to leave these samples '
                               f'out):{lines}')
        log.warning('%s, left out (--skip-bad):%s', head, lines)
    kept = [i for i, a in enumerate(out) if not isinstance(a, str)]
    log.info('features (%s): %d samples, %d computed, in %.1f s', desc, len(kept), len(todo), time.time() - t0)
    return np.stack([out[i] for i in kept]), [samples[i] for i in kept]
