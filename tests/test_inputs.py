"""The per-sample pipeline: which frames EMR uses, and a feature cache whose key covers every input change."""
import dataclasses
import shutil

import numpy as np
import pytest

import align
import config
import flow
import inputs
from data import Sample


def _sample(tmp_path, domain='micro', n=11, onset=2, apex=8):
    paths = []
    for i in range(n):
        p = tmp_path / f'img{i}.jpg'
        p.write_bytes(b'frame %d' % i)
        paths.append(str(p))
    return Sample('casme2', 'sub01', 'EP01', tuple(paths), onset, apex, 1, 200.0, domain)


def test_emr_frames_micro_and_macro_with_and_without_emr(tmp_path):
    micro, macro = _sample(tmp_path), _sample(tmp_path, 'macro')
    f = micro.frames
    on, off = config.PAPER, dataclasses.replace(config.PAPER, emr=False)
    mit = dataclasses.replace(on, evm_alpha=10.0, evm_lambda_c=16.0, evm_r1=0.4, evm_r2=0.05)
    assert inputs.emr_frames(micro, mit) == (f[2:9], 6)            # a temporal filter needs the clip onset..apex
    assert inputs.emr_frames(micro, on) == ((f[2], f[8]), 1)       # the change since onset needs onset and apex
    assert inputs.emr_frames(micro, off) == ((f[2], f[8]), 1)
    assert inputs.emr_frames(macro, on) == ((f[2], f[5]), 1)       # onset and the onset-apex middle frame
    assert inputs.emr_frames(macro, mit) == ((f[2], f[5]), 1)
    assert inputs.emr_frames(macro, off) == ((f[2], f[8]), 1)


def test_cache_key_changes_with_everything_that_changes_an_input(tmp_path, monkeypatch):
    s = _sample(tmp_path)
    cfg = config.PAPER
    key = inputs.cache_key(s, cfg)
    assert key == inputs.cache_key(s, cfg) and len(key) == 40
    # Settings of the input (EVM only matters where EMR is on).
    for change in (dict(align_size=128), dict(emr=False), dict(flow='farneback'), dict(size=64), dict(evm_alpha=5.0),
                   dict(evm_r1=0.3), dict(no_face='center'), dict(landmarks='my.dat'), dict(apex='spot'),
                   dict(stabilise=True)):
        assert inputs.cache_key(s, dataclasses.replace(cfg, **change)) != key, change
    off = dataclasses.replace(cfg, emr=False)
    assert inputs.cache_key(s, dataclasses.replace(off, evm_alpha=5.0)) == inputs.cache_key(s, off)
    # Settings that never change an input.
    for same in (dict(epochs=3), dict(lr_heads=0.1), dict(parts=False), dict(device='cuda'), dict(workers=3)):
        assert inputs.cache_key(s, dataclasses.replace(cfg, **same)) == key, same
    # The pipeline's constants: flow parameters, the input normalisation, the alignment template.
    for module, name, edit in ((flow, 'TVL1_DEFAULTS', ('warps', 4)), (flow, 'FARNEBACK_DEFAULTS', ('levels', 4)),
                               (flow, 'ENCODE', ('flow_scale', 3.0))):
        monkeypatch.setitem(getattr(module, name), *edit)
        assert inputs.cache_key(s, cfg) != key, name
        monkeypatch.undo()
    monkeypatch.setattr(align, 'TEMPLATE', align.TEMPLATE + 0.01)
    assert inputs.cache_key(s, cfg) != key
    monkeypatch.undo()
    # The code that computes an input: an edit of any pipeline module.
    for name in inputs.PIPELINE:
        root = tmp_path / f'src_{name}'
        root.mkdir()
        for f in inputs.PIPELINE:
            shutil.copy(config.ROOT / f, root / f)
        with open(root / name, 'a') as fh:
            fh.write('\n# edited\n')
        monkeypatch.setattr(inputs, 'ROOT', root)
        assert inputs.cache_key(s, cfg) != key, name
        monkeypatch.undo()
    # The sample's identity and its frame files.
    assert inputs.cache_key(dataclasses.replace(s, apex=7), cfg) != key
    assert inputs.cache_key(dataclasses.replace(s, clip='EP02'), cfg) != key
    mit = dataclasses.replace(cfg, evm_alpha=10.0, evm_lambda_c=16.0, evm_r1=0.4, evm_r2=0.05)
    mit_key = inputs.cache_key(s, mit)
    with open(s.frames[5], 'ab') as fh:       # a frame between onset and apex: read only by a temporal filter
        fh.write(b'more')
    assert inputs.cache_key(s, cfg) == key and inputs.cache_key(s, mit) != mit_key
    with open(s.frames[8], 'ab') as fh:
        fh.write(b'more')
    assert inputs.cache_key(s, cfg) != key
    assert inputs.cache_key(s, off) == inputs.cache_key(s, off)


def test_digest_is_order_free_and_typed():
    base = dict(sample='casme2/sub01/EP02_01f', frames=['a.jpg', 'b.jpg'], alpha=10)
    k = inputs.digest(**base)
    assert k == inputs.digest(**dict(reversed(list(base.items()))))
    assert inputs.digest(**{**base, 'alpha': 20}) != k
    assert inputs.digest(x=np.float32(0.5)) == inputs.digest(x=0.5)
    with pytest.raises(TypeError):
        inputs.digest(x=object())


def test_cached_computes_once_and_writes_atomically(tmp_path, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(2, 3)

    key = inputs.digest(sample='x', alpha=10)
    first = inputs.cached(tmp_path, key, compute)
    second = inputs.cached(tmp_path, key, compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    assert (tmp_path / key[:2] / f'{key}.npy').is_file()

    def broken_save(fh, arr, allow_pickle=False):
        fh.write(b'\x93NUMPY partial')
        raise OSError('disk full')

    key3 = inputs.digest(sample='y')
    monkeypatch.setattr(inputs.np, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        inputs.cached(tmp_path, key3, compute)
    monkeypatch.undo()
    assert not [p for p in (tmp_path / key3[:2]).iterdir() if key3 in p.name]  # no target, no temp file
    np.testing.assert_array_equal(inputs.cached(tmp_path, key3, compute), first)
    with pytest.raises(ValueError, match='cache key'):
        inputs.cached(tmp_path, '../x', compute)


@pytest.mark.parametrize('damage', [b'', b'\x93NUMPY\x01\x00v\x00{'])
def test_a_damaged_cache_file_is_computed_again_with_a_warning(tmp_path, caplog, damage):
    key = inputs.digest(sample='d')
    good = inputs.cached(tmp_path, key, lambda: np.ones((2, 2), np.float32))
    path = tmp_path / key[:2] / f'{key}.npy'
    path.write_bytes(damage)
    again = inputs.cached(tmp_path, key, lambda: np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(again, good)
    assert str(path) in caplog.text and 'computing it again' in caplog.text
    np.testing.assert_array_equal(np.load(path), good)                  # repaired on disk


def test_unusable_samples_are_listed_together_or_left_out(demo_root, tmp_path):
    import cv2

    import data
    samples = [s for s in data.load_megc(demo_root / 'megc') if s.dataset == 'casme2'][:3]
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
    with pytest.raises(data.DatasetError) as e:
        inputs.features(copies, cfg, tmp_path / 'cache', workers=1, quiet=True)
    msg = str(e.value)
    assert msg.startswith('2 samples whose frames or face cannot be used') and '--skip-bad' in msg
    assert f'{cut}: the JPEG data ends' in msg and f'{blank}: no face found' in msg
    x, kept = inputs.features(copies, cfg, tmp_path / 'cache', workers=1, quiet=True, skip_bad=True)
    assert kept == copies[2:] and x.shape == (1, 3, 40, 40)
