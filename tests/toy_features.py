"""Toy features for the tests of the cache's claims: python toy_features.py CACHE LOG N runs cache.features over N
toy samples, each computation appending 'pid clip' to LOG. The first computation of each process waits until two
processes have begun computing (or 60 s), so that both are at work on one cold cache together, whatever the
timing: without claims, both would compute the first sample."""
import logging
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import cache  # noqa: E402


def compute(s, cfg):
    import numpy as np
    log = Path(os.environ['TOY_FEATURE_LOG'])
    with open(log, 'a') as fh:
        fh.write(f'{os.getpid()} {s.clip}\n')
    deadline = time.time() + 60
    while len({line.split()[0] for line in log.read_text().splitlines()}) < 2 and time.time() < deadline:
        time.sleep(0.05)
    return np.full(3, int(s.clip[1:]), np.float32)


def key(s, cfg):
    return dict(kind='toy', clip=s.clip)


def samples(n):
    return [SimpleNamespace(dataset='toy', subject='a', clip=f'c{i}') for i in range(n)]


if __name__ == '__main__':
    logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')
    os.environ['TOY_FEATURE_LOG'] = sys.argv[2]
    x, _ = cache.features(samples(int(sys.argv[3])), None, sys.argv[1], compute, key, quiet=True)
    print(x[:, 0].astype(int).tolist())
