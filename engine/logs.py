"""Where a run's log lines go: the terminal, through tqdm so that a line logged while a progress bar runs does not
break the bar, and the run's own log, <run folder>/run.log, appended across resumes."""
import logging
import os
import sys
import time

TERMINAL = logging.Formatter('%(asctime)s %(name)s: %(message)s', datefmt='%H:%M:%S')
# The date, as the file outlives the day; the process, as the shards of one run folder append to one file.
FILE = logging.Formatter('%(asctime)s [%(process)d] %(name)s: %(message)s', datefmt='%Y-%m-%d %H:%M:%S')


class BarSafe(logging.StreamHandler):
    """Writes each record through tqdm.write, which clears the progress bars drawn on the same stream first and
    draws them again after: a plain write would land after the bar's text, on its line."""

    def emit(self, record):
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


def setup(quiet):
    """mer.py's terminal: its records (warnings only under -q) on stderr through BarSafe; the root logger at INFO
    so that the run's own log (RunLog) keeps the info lines that -q hides. Like logging.basicConfig, it does
    nothing where the root logger already has handlers (an embedding program's, pytest's)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = BarSafe(sys.stderr)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    handler.setFormatter(TERMINAL)
    root.addHandler(handler)
    root.setLevel(logging.INFO)


class RunLog(logging.Handler):
    """The run's own log: every record at INFO and above, and the lines the run prints (write), kept in memory
    until the run folder is known (start), then appended to <folder>/run.log. Appended, not written atomically as
    every other file is: several shards append to one run log, and each line is one write to a file opened for
    appending, so their lines interleave whole and none is lost. Progress bars never reach it (they are not
    records)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.setFormatter(FILE)
        self.path, self.lines = None, []

    def emit(self, record):
        try:
            self.write(self.format(record))
        except Exception:
            self.handleError(record)

    def write(self, text):
        if self.path is None:
            self.lines.append(text)
            return
        with open(self.path, 'a', encoding='utf-8') as fh:       # each record kept as it comes: a killed run keeps it
            fh.write(text + '\n')

    def start(self, folder, argv):
        """Appends to folder/run.log a line naming this start, then the lines kept so far."""
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / 'run.log'
        kept, self.lines = self.lines, []
        self.write(f'--- {time.strftime("%Y-%m-%d %H:%M:%S")} [{os.getpid()}] mer.py {" ".join(argv)}')
        for line in kept:
            self.write(line)
