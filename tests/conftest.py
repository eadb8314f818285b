import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / 'shared' / 'megc2019'


# Files whose every test runs whole commands, processes, signals or videos: all slow. Elsewhere a slow test carries
# @pytest.mark.slow itself.
SLOW_FILES = {'test_mer.py', 'test_cluster.py', 'test_outputs.py', 'test_api.py', 'test_predict.py',
              'test_firsthour.py', 'test_spotting.py'}


def pytest_configure(config):
    # The fast lane, `pytest -m "not slow"`, checks the method; the slow tests run whole commands, processes,
    # signals and long videos (README; CI runs every test).
    config.addinivalue_line('markers', 'slow: a test of seconds to minutes: whole commands, processes, signals, '
                                       'long videos (deselect with -m "not slow")')


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope='session')
def shared_megc():
    """The real MEGC2019 annotation files beside the repository, or a skip that says why."""
    if not (SHARED / 'combined_3class_gt.csv').is_file():
        pytest.skip(f'{SHARED} not found: the real MEGC2019 annotation files are absent on this machine')
    return SHARED


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory):
    """A small demo set (2 subjects a dataset), built once for the whole test session."""
    from data import synth
    return synth.build(tmp_path_factory.mktemp('demo'), subjects=2, clips=3, ck_subjects=2, ck_clips=3)


@pytest.fixture(scope='session')
def feature_cache(tmp_path_factory):
    """One feature cache for the session: each test computes only the inputs no earlier test did."""
    return tmp_path_factory.mktemp('cache')


@pytest.fixture(scope='session')
def model_file(demo_root, tmp_path_factory, feature_cache):
    """model.pt of a tiny network trained on the small demo set with --final-only (no LOSO): made once."""
    import mer
    out = tmp_path_factory.mktemp('model')
    assert mer.main(['--data', str(demo_root / 'megc'), '--ckplus', str(demo_root / 'ck'), '--final-only',
                     '--init', 'random', '--epochs', '1', '--batch-size', '16', '--size', '36', '--align-size', '64',
                     '--workers', '1', '-q', '--out', str(out), '--cache', str(feature_cache)]) == 0
    return out / 'model.pt'
