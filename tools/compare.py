"""Compare finished runs made with different settings: Table I's cells and the paired comparisons, as `--table`
prints them for its own rows, for any run folders (an EMR setting against another, a row of one table against a
row of another run on the same data).

    python -m tools.compare "band camera=runs/demo_hard/part_adversarial_emr" "band all=/tmp/all" --out cmp.md

Each NAME=FOLDER is a run folder (folds/*.csv inside) or a row folder of `--seeds` runs (seed<N>/folds/*.csv):
its seeds are averaged, as `--table` does. The first is compared with each of the others on the same resampled
subjects (a paired bootstrap); all must hold the same subjects.
"""
import argparse
import sys
from pathlib import Path

if not __package__:       # run as a file (python tools/compare.py), the project's modules are not on the path
    sys.exit('run it as a module from the repository root: .venv/bin/python -m tools.compare (or install the package: '
             'pip install -e .)')

from engine import runfolder
from results import report, stats
from util import files


def fold_rows(folder):
    """The prediction rows of a run folder's fold files (runfolder.read_fold's, label and pred as ints)."""
    folder = Path(folder)
    return [r for path in sorted((folder / 'folds').glob('*.csv')) for r in runfolder.read_fold(folder, path.stem)[0]]


def runs_of(folder):
    """[rows of each seed's run] of a run folder, or of the seed<N> run folders under a row folder."""
    folder = Path(folder)
    seeds = sorted(folder.glob('seed*/folds'), key=lambda p: int(p.parent.name[4:]))
    runs = [fold_rows(p.parent) for p in seeds] if seeds else [fold_rows(folder)]
    if not all(runs):
        raise SystemExit(f'tools.compare: {folder}: no fold files (folds/*.csv or seed<N>/folds/*.csv); give a '
                         'finished run folder')
    return runs


def compare(named, n_boot=1000):
    """Markdown: the cells of each named list of runs, then the paired comparisons of the first with the others."""
    lines = [(f'{name} (mean of {len(runs)} seeds)' if len(runs) > 1 else name, report.scored(runs, n_boot))
             for name, runs in named]
    paired = [(f'{named[0][0]} − {name}', stats.paired(named[0][1], runs, n_boot)) for name, runs in named[1:]]
    text = f'{report.table(lines)}\n'
    if paired:
        text += ('\nPaired comparisons (the same resampled subjects for both; "first ahead": the share of draws in '
                 f'which the first scores higher; {n_boot} draws):\n\n{report.paired_table(paired)}\n')
    return text


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m tools.compare', description=__doc__.split('\n')[0])
    p.add_argument('runs', nargs='+', metavar='NAME=FOLDER', help='a name and a finished run (or row) folder')
    p.add_argument('--bootstrap', type=int, default=1000, help='bootstrap draws (default %(default)s)')
    p.add_argument('--out', help='also write the tables to this markdown file')
    a = p.parse_args(argv)
    named = []
    for spec in a.runs:
        name, sep, folder = spec.rpartition('=')
        if not sep or not name:
            p.error(f'{spec}: expected NAME=FOLDER')
        named.append((name, runs_of(folder)))
    try:
        text = compare(named, a.bootstrap)
    except ValueError as e:
        raise SystemExit(f'tools.compare: {e}') from None
    print(text)
    if a.out:
        files.atomic_write(Path(a.out), text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
