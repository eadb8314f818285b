"""The feature cache: which frames a sample needs, a key that covers every input change, atomic files."""
import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import align
import config
import flow
import pipeline
from config import Sample
from engine import cache, cli
from util import files


def _sample(tmp_path, domain='micro', n=11, onset=2, apex=8):
    paths = []
    for i in range(n):
        p = tmp_path / f'img{i}.jpg'
        p.write_bytes(b'frame %d' % i)
        paths.append(str(p))
    return Sample('casme2', 'sub01', 'EP01', tuple(paths), onset, apex, 1, 200.0, domain)


def test_the_frames_emr_needs_for_micro_and_macro_with_and_without_emr(tmp_path):
    micro, macro = _sample(tmp_path), _sample(tmp_path, 'macro')
    on, off = config.PAPER, dataclasses.replace(config.PAPER, emr=False)
    mit = dataclasses.replace(on, evm_alpha=10.0, evm_lambda_c=16.0, evm_r1=0.4, evm_r2=0.05)
    attenuated = dataclasses.replace(on, evm_lambda_c=16.0)
    assert pipeline.needed(micro, mit) == (list(range(2, 9)), 6)   # a temporal filter needs the clip onset..apex
    assert pipeline.needed(micro, on) == ([2, 8], 1)                # the change since onset needs onset and apex
    assert pipeline.needed(micro, attenuated) == ([2, 8], 1)
    assert pipeline.needed(micro, off) == ([2, 8], 1)
    assert pipeline.needed(macro, on) == ([2, 5], 1)                # onset and the onset-apex middle frame
    assert pipeline.needed(macro, mit) == ([2, 5], 1)
    assert pipeline.needed(macro, off) == ([2, 8], 1)


def _key(s, cfg):
    return cache.digest(**cache.flow_key(s, cfg))


def test_cache_key_changes_with_everything_that_changes_an_input(tmp_path, monkeypatch):
    s = _sample(tmp_path)
    cfg = cli.run_config(config.PAPER)        # the paper's settings with how a run is carried out
    key = _key(s, cfg)
    assert key == _key(s, cfg) and len(key) == 40
    # Settings of the input (EVM only matters where EMR is on).
    for change in (dict(align_size=128), dict(emr=False), dict(flow='farneback'), dict(size=64), dict(evm_alpha=5.0),
                   dict(evm_r1=0.3), dict(evm_chroma=0.2), dict(no_face='center'), dict(landmarks='my.dat'),
                   dict(apex='spot'), dict(stabilise=True)):
        assert _key(s, dataclasses.replace(cfg, **change)) != key, change
    off = dataclasses.replace(cfg, emr=False)
    assert _key(s, dataclasses.replace(off, evm_alpha=5.0)) == _key(s, off)
    # Settings that never change an input.
    for same in (dict(epochs=3), dict(lr_heads=0.1), dict(parts=False), dict(hidden=8), dict(device='cuda'),
                 dict(workers=3)):
        assert _key(s, dataclasses.replace(cfg, **same)) == key, same
    # The pipeline's constants: flow parameters, the input normalisation, the alignment template.
    for module, name, edit in ((flow, 'TVL1_DEFAULTS', ('warps', 4)), (flow, 'FARNEBACK_DEFAULTS', ('levels', 4)),
                               (flow, 'ENCODE', ('flow_scale', 3.0))):
        monkeypatch.setitem(getattr(module, name), *edit)
        assert _key(s, cfg) != key, name
        monkeypatch.undo()
    monkeypatch.setattr(align, 'TEMPLATE', align.TEMPLATE + 0.01)
    assert _key(s, cfg) != key
    monkeypatch.undo()
    # The sample's identity and its frame files.
    assert _key(dataclasses.replace(s, apex=7), cfg) != key
    assert _key(dataclasses.replace(s, clip='EP02'), cfg) != key
    mit = dataclasses.replace(cfg, evm_alpha=10.0, evm_lambda_c=16.0, evm_r1=0.4, evm_r2=0.05)
    mit_key = _key(s, mit)
    with open(s.frames[5], 'ab') as fh:       # a frame between onset and apex: read only by a temporal filter
        fh.write(b'more')
    assert _key(s, cfg) == key and _key(s, mit) != mit_key
    with open(s.frames[8], 'ab') as fh:
        fh.write(b'more')
    assert _key(s, cfg) != key
    assert _key(s, off) == _key(s, off)


def _edited(tmp_path, monkeypatch, name, edit):
    """The code's digest with module `name` edited by edit(source) in a copy of every module that computes."""
    root = tmp_path / f'src_{name.replace("/", "_")}_{len(list(tmp_path.iterdir()))}'
    root.mkdir()
    for f in cache.FLOW_MODULES:
        (root / f).parent.mkdir(exist_ok=True)
        shutil.copy(files.ROOT / f, root / f)
    (root / name).write_text(edit((root / name).read_text()))
    monkeypatch.setattr(files, 'ROOT', root)
    monkeypatch.setattr(cache, '_sources', {})
    try:
        return files.source_digest(cache.FLOW_MODULES)
    finally:
        monkeypatch.undo()


def test_the_code_key_follows_what_the_code_computes_not_its_comments(tmp_path, monkeypatch):
    base = files.source_digest(cache.FLOW_MODULES)
    for name in cache.FLOW_MODULES:
        # A comment, a docstring edit and blank lines keep the key ...
        assert _edited(tmp_path, monkeypatch, name, lambda t: t + '\n\n# a remark\n') == base, name
        assert _edited(tmp_path, monkeypatch, name, lambda t: t.replace('"""', '"""Edited. ', 1)) == base, name
        # ... a changed expression does not.
        assert _edited(tmp_path, monkeypatch, name, lambda t: t + '\nEXTRA = 1\n') != base, name
    assert _edited(tmp_path, monkeypatch, 'emr.py', lambda t: t.replace('// 2', '// 3')) != base
    # The key of a sample follows: a cleared per-process memo sees the new code.
    s = _sample(tmp_path)
    key = _key(s, config.PAPER)
    root = tmp_path / 'changed'
    root.mkdir()
    for f in cache.FLOW_MODULES:
        (root / f).parent.mkdir(exist_ok=True)
        shutil.copy(files.ROOT / f, root / f)
    (root / 'flow.py').write_text((root / 'flow.py').read_text() + '\nEXTRA = 1\n')
    monkeypatch.setattr(files, 'ROOT', root)
    monkeypatch.setattr(cache, '_sources', {})
    assert _key(s, config.PAPER) != key


def test_digest_is_order_free_and_typed():
    base = dict(sample='casme2/sub01/EP02_01f', frames=['a.jpg', 'b.jpg'], alpha=10)
    k = cache.digest(**base)
    assert k == cache.digest(**dict(reversed(list(base.items()))))
    assert cache.digest(**{**base, 'alpha': 20}) != k
    assert cache.digest(x=np.float32(0.5)) == cache.digest(x=0.5)
    with pytest.raises(TypeError):
        cache.digest(x=object())


def test_cached_computes_once_and_writes_atomically(tmp_path, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(2, 3)

    key = cache.digest(sample='x', alpha=10)
    first = cache.cached(tmp_path, key, compute)
    second = cache.cached(tmp_path, key, compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    assert (tmp_path / key[:2] / f'{key}.npy').is_file()

    def broken_save(fh, arr, allow_pickle=False):
        fh.write(b'\x93NUMPY partial')
        raise OSError('disk full')

    key3 = cache.digest(sample='y')
    monkeypatch.setattr(cache.np, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        cache.cached(tmp_path, key3, compute)
    monkeypatch.undo()
    assert not [p for p in (tmp_path / key3[:2]).iterdir() if key3 in p.name]  # no target, no temp file
    np.testing.assert_array_equal(cache.cached(tmp_path, key3, compute), first)
    with pytest.raises(ValueError, match='cache key'):
        cache.cached(tmp_path, '../x', compute)


@pytest.mark.parametrize('damage', [b'', b'\x93NUMPY\x01\x00v\x00{'])
def test_a_damaged_cache_file_is_computed_again_with_a_warning(tmp_path, caplog, damage):
    key = cache.digest(sample='d')
    good = cache.cached(tmp_path, key, lambda: np.ones((2, 2), np.float32))
    path = tmp_path / key[:2] / f'{key}.npy'
    path.write_bytes(damage)
    again = cache.cached(tmp_path, key, lambda: np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(again, good)
    assert str(path) in caplog.text and 'computing it again' in caplog.text
    np.testing.assert_array_equal(np.load(path), good)                  # repaired on disk


def test_unusable_samples_are_listed_together_or_left_out(demo_root, tmp_path):
    import cv2

    from data import releases
    samples = [s for s in releases.load_megc(demo_root / 'megc') if s.dataset == 'casme2'][:3]
    copies = []
    for k, s in enumerate(samples):       # each sample's frames copied, so they can be damaged
        folder = tmp_path / f'clip{k}'
        folder.mkdir()
        frames = tuple(str(shutil.copy(f, folder)) for f in s.frames)
        copies.append(dataclasses.replace(s, frames=frames))
    cut = copies[0].frames[copies[0].apex]
    with open(cut, 'r+b') as fh:
        fh.truncate(len(open(cut, 'rb').read()) // 2)
    blank = copies[1].frames[copies[1].onset]
    cv2.imwrite(blank, np.full((240, 320, 3), 128, np.uint8))
    cfg = dataclasses.replace(config.DEMO, align_size=96, size=40)
    with pytest.raises(releases.DatasetError) as e:
        cache.features(copies, cfg, tmp_path / 'cache', workers=1, quiet=True)
    msg = str(e.value)
    assert msg.startswith('2 samples whose frames or face cannot be used') and '--skip-bad' in msg
    assert f'{cut}: the JPEG data ends' in msg and f'{blank}: no face found' in msg
    x, kept = cache.features(copies, cfg, tmp_path / 'cache', workers=1, quiet=True, skip_bad=True)
    assert kept == copies[2:] and x.shape == (1, 3, 40, 40)


@pytest.mark.parametrize('start,modules', [('pipeline', cache.FLOW_MODULES), ('lbptop', cache.LBPTOP_MODULES)])
def test_the_code_key_covers_every_module_a_feature_imports(start, modules):
    # From what the feature's function calls (the method's entry and the frame reader it hands it), every project
    # module reached; config.py holds settings, which the key holds by value, and the Sample record.
    from test_layout import imported
    from test_layout import modules as project
    known = project()
    seen, todo = set(), [start, 'data.frames']
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += sorted(imported(known[name], known) - {'config', name.split('.')[0]})
    assert {str(known[m].relative_to(files.ROOT)) for m in seen} == set(modules)


def test_two_processes_on_one_cold_cache_compute_each_sample_once(tmp_path):
    """Both processes start on a cold cache and are computing at the same time (toy_features holds each one's first
    computation until the other has begun): a sample claimed by one is left to it, then read from the cache."""
    log = tmp_path / 'computed.txt'
    cmd = [sys.executable, str(Path(__file__).parent / 'toy_features.py'), str(tmp_path / 'cache'), str(log), '6']
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    computed = [line.split() for line in log.read_text().splitlines()]
    assert sorted(clip for _, clip in computed) == [f'c{i}' for i in range(6)]          # each sample once
    assert len({pid for pid, _ in computed}) == 2                                      # by both processes
    assert [o for o, _ in outs] == ['[0, 1, 2, 3, 4, 5]\n'] * 2                         # both have every feature
    here = sorted(int(re.search(r'(\d+) computed here, (\d+) by other', e)[1]) for _, e in outs)
    assert sum(here) == 6 and here[0] >= 1
    assert not list((tmp_path / 'cache').glob('*/*.lock'))                             # claims leave nothing


def test_a_claimed_feature_is_waited_for_and_a_dead_claim_taken_over(tmp_path):
    """A claim is an flock, which dies with its process: closing the claim's file here stands for that death."""
    from util.files import lock
    key = cache.digest(sample='claimed')
    path = tmp_path / key[:2] / f'{key}.npy'
    path.parent.mkdir(parents=True)
    held = lock(path.with_suffix('.lock'))                     # another process is computing it
    assert cache.cached(tmp_path, key, lambda: np.zeros(2), wait=False) is None
    held.close()                                                # ... and died without writing it
    np.testing.assert_array_equal(cache.cached(tmp_path, key, lambda: np.ones(2), wait=True), np.ones(2))
