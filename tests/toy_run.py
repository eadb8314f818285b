"""The toy set's LOSO through runfolder.run, as mer.py runs a row, for the tests that stop and kill runs:
python toy_run.py OUT JOBS [EPOCHS]. It ends as mer.py does on a stop signal (one line, checkpoint.STOPPED)."""
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from toy import learnable  # noqa: E402

import config  # noqa: E402
from engine import checkpoint, cli  # noqa: E402
from engine import runfolder  # noqa: E402


def data():
    return learnable(n_subjects=2, per=3, macro=3, size=36)


def settings(jobs=1, epochs=3):
    """Checkpoints at every epoch's end, so that a kill at any moment loses at most one epoch; not quiet: the
    tests read the log's lines."""
    return cli.run_config(config.PAPER, size=36, epochs=epochs, batch_size=4, init='random', precision='fp32',
                               device='cpu', jobs=jobs, checkpoint_every=0)


def children(pid):
    """PIDs of the processes whose parent is `pid` (Linux /proc)."""
    import os
    out = []
    for d in os.listdir('/proc'):
        try:
            if d.isdigit() and int(open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()[1]) == pid:
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


if __name__ == '__main__':
    checkpoint.catch_stop_signals()
    logging.basicConfig(level=logging.INFO, format='%(name)s: %(message)s')
    x, meta = data()
    try:
        runfolder.run(x, meta, settings(int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 3), sys.argv[1])
    except checkpoint.Stopped as e:
        print(checkpoint.message(e), file=sys.stderr)
        sys.exit(checkpoint.STOPPED)
