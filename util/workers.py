"""Worker processes for the per-sample stages (features, the fidelity study) and the training processes.

One process per core, each with one BLAS and one OpenCV thread, so that the processes share out the cores rather
than nesting thread pools; Ctrl-C is left to the parent, which reports it in one line; a worker ends when its
parent dies, even by SIGKILL.
"""
import contextlib
import os
import signal
from multiprocessing import get_context


def usable_cpus():
    """The CPUs this process may run on: its affinity, which the scheduler sets (SLURM's cgroup for
    --cpus-per-task, taskset, numactl), not the machine's count; os.cpu_count() where there is no affinity (macOS,
    Windows)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_spawn():
    """Whether spawned processes can start here: each one runs the main script again from its path, and a script
    read from standard input (`python - < script.py`) has none, so each would die as it starts, and a Pool would
    start them again forever. A notebook, or `python -c`, has no main path to run: they can."""
    import sys
    main = getattr(sys.modules.get('__main__'), '__file__', None)
    return main is None or os.path.isfile(main)


def processes(asked):
    """How many worker or training processes to start: `asked` (--workers, --jobs), or 0 for one per usable CPU;
    1 (this one) where none can be spawned (can_spawn). The results do not depend on it."""
    return (asked or usable_cpus()) if can_spawn() else 1


def worker_setup():
    """In a worker process: Ctrl-C ignored, one BLAS thread, and an end with the parent (Linux's
    PR_SET_PDEATHSIG; elsewhere only the rest holds)."""
    import ctypes
    import multiprocessing
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        __import__('numpy')           # loads its BLAS, which threadpoolctl can limit only once loaded
        from threadpoolctl import threadpool_limits
        threadpool_limits(1)
    except ImportError:
        pass
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)      # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)                                     # the parent died before the line above took effect


@contextlib.contextmanager
def starting():
    """A region where processes are started: they are born ignoring Ctrl-C and SIGUSR1. A terminal's Ctrl-C goes to
    every process of the foreground group, and a spawned child still importing (seconds, before worker_setup)
    would raise KeyboardInterrupt and print its own traceback beside the parent's one line; SLURM's --signal USR1
    goes to every process of the job, and would kill multiprocessing's resource tracker, whose successor then
    prints tracebacks. An ignored signal stays ignored across exec, where a blocked one does not (subprocess
    unblocks every signal in the child). Meanwhile the parent holds these signals back and takes them as it
    leaves; only a thread other than the main one could take one and drop it, within the milliseconds that
    starting takes. The training processes install their own SIGUSR1 handler (runfolder._worker)."""
    import multiprocessing.resource_tracker
    held = (signal.SIGINT, signal.SIGUSR1) if hasattr(signal, 'SIGUSR1') else (signal.SIGINT,)
    mask = getattr(signal, 'pthread_sigmask', None)        # not on Windows: there worker_setup's ignore alone
    old_mask = mask(signal.SIG_BLOCK, held) if mask else None
    handlers = {s: signal.signal(s, signal.SIG_IGN) for s in held}
    try:
        multiprocessing.resource_tracker.ensure_running()
        yield
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        if mask:
            mask(signal.SIG_SETMASK, old_mask)


def one_thread(fn, job):
    """fn(job) with OpenCV on one thread (the caller's processes already share out the cores)."""
    import cv2
    cv2.setNumThreads(1)
    return fn(job)


def imap(fn, jobs, workers=1, desc=None, unit='clip', quiet=False):
    """[fn(job) for job in jobs] in order, in `workers` spawned processes when there are several jobs, with a
    progress bar; fn must be a module-level function (it is pickled)."""
    import functools

    from tqdm import tqdm
    jobs = list(jobs)
    bar = dict(total=len(jobs), unit=unit, desc=desc, disable=quiet or not jobs)
    if workers > 1 and len(jobs) > 1 and can_spawn():
        with starting():
            pool = get_context('spawn').Pool(min(workers, len(jobs)), worker_setup)
        with pool:
            return list(tqdm(pool.imap(functools.partial(one_thread, fn), jobs, chunksize=2), **bar))
    return [one_thread(fn, j) for j in tqdm(jobs, **bar)]
