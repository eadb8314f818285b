"""The toy set's LOSO through runs.run, as mer.py runs a row, for the tests that stop and kill runs:
python toy_run.py OUT JOBS [EPOCHS]. It ends as mer.py does on a stop signal (one line, checkpoint.STOPPED)."""
import dataclasses
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import checkpoint  # noqa: E402
import config  # noqa: E402
import runs  # noqa: E402
from toy import learnable  # noqa: E402


def data():
    return learnable(n_subjects=2, per=3, macro=3, size=36)


def settings(jobs=1, epochs=3):
    """Checkpoints at every epoch's end, so that a kill at any moment loses at most one epoch; not quiet: the
    tests read the log's lines."""
    return dataclasses.replace(config.PAPER, size=36, epochs=epochs, batch_size=4, init='random', precision='fp32',
                               device='cpu', jobs=jobs, checkpoint_every=0)


if __name__ == '__main__':
    checkpoint.catch_stop_signals()
    logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')
    x, meta = data()
    try:
        runs.run(x, meta, settings(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 3), sys.argv[1])
    except checkpoint.Stopped as e:
        print(checkpoint.message(e), file=sys.stderr)
        sys.exit(checkpoint.STOPPED)
