"""A small learnable set for the training tests: a sample's class is where a blob of motion sits."""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Meta:
    dataset: str
    subject: str
    clip: str
    label: int
    domain: str


def learnable(n_subjects=4, per=3, macro=4, size=48, seed=0):
    """(x (N, 3, size, size) float32, meta): class c has a blob in channel c, at a class-specific place."""
    rng = np.random.default_rng(seed)
    meta, xs = [], []
    q = size // 4
    for i in range(n_subjects * per + macro):
        label = i % 3
        x = rng.normal(0, 0.1, (3, size, size)).astype(np.float32)
        r, c = [(q, q), (q, 2 * q), (2 * q, q)][label]
        x[label, r:r + q, c:c + q] += 1.0
        xs.append(x)
        domain = 'micro' if i < n_subjects * per else 'macro'
        meta.append(Meta('casme2' if (i // per) % 2 else 'samm', f'sub{i // per:02d}' if domain == 'micro' else 'S005',
                         f'c{i}', label, domain))
    return np.stack(xs), meta
