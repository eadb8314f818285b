"""Benchmarks (issue 7), measured in one run on whatever machine this is; the table goes into BENCHMARKS.md.

    python bench.py              # everything: machine peak, preprocessing, training, a full demo LOSO
    python bench.py --no-demo    # without the demo LOSO (saves its minutes)
    python bench.py --protocol   # also the paper's full protocol on a synthetic set of real size (meant for a GPU)

(a) preprocessing per stage (alignment, EVM, flow) on a clip of real-dataset size (100 frames at 640x480) and on
    the demo's clips, one thread each, so clips/s is per core; EVM's peak memory on a 200-frame 640x480 clip;
(b) training samples/s of the LOSO step (loso.train_group itself, augmentation included) at 224 and at the demo
    size, achieved FLOP/s (torch's FLOP counter on one forward+backward) and MFU against the measured matmul peak
    of the same dtype and of fp32; one fold at a time vs several folds vmapped vs two concurrent processes;
(c) wall time and peak memory of `mer.py --demo` with a fresh feature cache and run folder.
Every figure is a median over repeats (these machines are noisy); ratios come from the same run.
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parent


def median_time(fn, repeats, warmup=1):
    """Median wall seconds of fn() over `repeats` calls after `warmup` unmeasured ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine():
    import torch
    cpu = next((line.split(':', 1)[1].strip() for line in open('/proc/cpuinfo') if line.startswith('model name')),
               platform.processor())
    amx = 'amx_tile' in open('/proc/cpuinfo').read()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'
    mem = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30
    return (f'{cpu}, {os.cpu_count()} cores{" (AMX)" if amx else ""}, {mem:.0f} GiB; GPU {gpu}; '
            f'torch {torch.__version__}, {torch.get_num_threads()} threads; Python {platform.python_version()}')


def sync(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------- peak
def matmul_peak(device, dtype, n=2048, repeats=7):
    """Measured FLOP/s of an n x n matmul in `dtype`: the machine's own ceiling for MFU."""
    import torch
    n = 8192 if device.type == 'cuda' else n
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))

    def step():
        for _ in range(4):
            a @ b
        sync(device)
    return 4 * 2 * n ** 3 / median_time(step, repeats)


# ----------------------------------------------------------------------------------------------- preprocessing
def real_size_clip(frames=100, h=480, w=640, seed=0):
    """(clip, onset, apex): a synthetic micro-expression of real-dataset size, on a real face photo."""
    import cv2

    import synth
    rng = np.random.default_rng(seed)
    face, lm = synth.identity(synth.photos()[1], rng)
    k = h / face.shape[0]
    face = cv2.resize(face, (w, h), interpolation=cv2.INTER_CUBIC)
    lm = lm * k
    onset, apex = 10, 50
    field = synth.deformation(lm, synth.POS, face.shape[:2], 1.5 * k)
    return synth.render(face, field, synth.profile(frames, onset, apex, 90), rng), onset, apex


def bench_preprocessing(repeats):
    """Per-stage seconds per clip on one core: a real-size clip, and whole samples of the demo set."""
    import cv2
    import torch

    import align
    import evm
    import flow
    import mer
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    rows = []
    clip, onset, apex = real_size_clip()
    al = align.align_clip(clip, 224)
    mag = evm.magnify(al, 200.0)
    g0, g1 = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (mag[onset], mag[apex]))
    f = flow.optical_flow(g0, g1)
    stages = [('align (dlib on onset, warp 100 frames) 640x480 -> 224', lambda: align.align_clip(clip, 224)),
              ('  of which dlib detect + 68 landmarks, one 640x480 frame', lambda: align.detect_landmarks(clip[0])),
              ('EVM magnify 100 frames 224x224 (IIR, alpha 10)', lambda: evm.magnify(al, 200.0)),
              ('TV-L1 flow onset->apex 224x224', lambda: flow.optical_flow(g0, g1)),
              ('Farneback flow onset->apex 224x224', lambda: flow.optical_flow(g0, g1, method='farneback')),
              ('encode u, v, strain -> 3x224x224', lambda: flow.encode(f, 224))]
    for name, fn in stages:
        rows.append((name, median_time(fn, repeats)))
    per_clip = sum(t for n, t in rows if not n.startswith(' ') and 'Farneback' not in n)
    rows.append(('real-size sample, align + EVM + TV-L1 + encode (sum)', per_clip))

    # The demo's own samples, through the very function the pipeline caches (no cache here).
    a = mer.parse_args(['--demo', '--demo-root', str(ROOT / 'demo_data')])
    micro, macro = mer.load_samples(a)
    picks = micro[::max(1, len(micro) // 12)][:12] + macro[::max(1, len(macro) // 6)][:6]
    times = {True: [], False: []}
    for emr in (True, False):
        p = mer.stage_params(a, emr)
        for s in picks:
            t0 = time.perf_counter()
            mer.sample_input(s, p)
            times[emr].append(time.perf_counter() - t0)
    rows.append((f'demo sample with EMR (align {a.align_size}, {len(picks)} samples, median)',
                 statistics.median(times[True])))
    rows.append(('demo sample without EMR (median)', statistics.median(times[False])))
    return rows


def peak_rss():
    """This process's peak resident memory in bytes (VmHWM: unlike ru_maxrss, not inherited from the parent)."""
    line = next(x for x in open('/proc/self/status') if x.startswith('VmHWM:'))
    return int(line.split()[1]) * 1024


def evm_memory_child():
    """Run in a child process: peak RSS of magnifying a 200-frame 640x480 clip, beyond the clip itself."""
    import cv2

    import evm
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    clip = np.empty((200, 480, 640, 3), np.uint8)
    for i in range(len(clip)):      # frame by frame: no temporary the size of the clip inflates the baseline
        clip[i] = rng.integers(0, 256, clip.shape[1:], dtype=np.uint8)
    base = peak_rss()
    t0 = time.perf_counter()
    evm.magnify(clip, 200.0)
    dt = time.perf_counter() - t0
    peak = peak_rss()
    print(json.dumps(dict(seconds=dt, clip_bytes=clip.nbytes, base=base, peak=peak)))


# ----------------------------------------------------------------------------------------------- training
def flops_per_sample(size, parts=True):
    """FLOPs of one training sample: forward + backward of PartNet, counted by torch (convs and matmuls)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import model
    net = model.PartNet(parts=parts)
    x = torch.randn(4, 3, size, size)
    with FlopCounterMode(display=False) as fc:
        out = net(x)
        model.losses(out, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))[0].backward()
    return fc.get_total_flops() / 4


class _Clock:
    """Stands in for the progress bar that train_group updates once per step: keeps the step times."""

    def __init__(self):
        self.t = [time.perf_counter()]

    def update(self, n):
        self.t.append(time.perf_counter())


def train_rate(size, bf16, stack, steps, device, batch=32):
    """Median training samples/s of loso.train_group (all folds in the group together), after warm-up."""
    import torch

    import loso
    pool = batch * steps
    g = torch.Generator().manual_seed(0)
    x = torch.randn(pool + stack, 3, size, size, generator=g).to(device)
    y = torch.randint(0, 3, (pool + stack,), generator=g).to(device)
    dom = (torch.arange(pool + stack) % 2).to(device)
    cfg = dict(parts=True, adv=True, epochs=1, batch_size=batch, lr_backbone=1e-5, lr_heads=1e-3, lr_step=10,
               weight_decay=1e-6, grad_clip=1.0, lambda_adv=1.0, augment=True, select_on_test=False, bf16=bf16,
               pool=pool)
    train = [np.arange(pool)] * stack
    test = [np.array([pool + k]) for k in range(stack)]
    clock = _Clock()
    if device.type == 'cuda':
        clock.update = lambda n: (torch.cuda.synchronize(), clock.t.append(time.perf_counter()))
    loso.train_group(x, y, dom, train, test, list(range(stack)), cfg, device, progress=clock)
    dt = np.diff(clock.t)[3:]                                  # the first steps warm up allocators and kernels
    return batch * stack / float(np.median(dt))


def train_child(size, bf16, stack, steps, threads):
    import torch
    torch.set_num_threads(threads)
    print(json.dumps(dict(rate=train_rate(size, bf16, stack, steps, torch.device('cpu')))))


def concurrent_rate(size, bf16, steps, procs=2):
    """Total samples/s of `procs` processes, one thread each, training one fold each at the same time."""
    cmd = [sys.executable, __file__, '--child', 'train', str(size), str(int(bf16)), '1', str(steps), '1']
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    return sum(json.loads(p.communicate()[0].strip().splitlines()[-1])['rate'] for p in ps)


# ----------------------------------------------------------------------------------------------- the demo LOSO
def demo_child():
    """Run in a child process (so that only mer.py and its workers are its descendants): wall and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / 'mer.py'), '--demo', '--demo-root', str(ROOT / 'demo_data'),
                        '--out', f'{tmp}/run', '--cache', f'{tmp}/cache', '-q'], check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024     # the largest descendant
        print(json.dumps(dict(wall=wall, peak=peak, table=Path(f'{tmp}/run/table.md').read_text())))


# ----------------------------------------------------------------------------------------------- the protocol
def protocol(device, stack):
    """Wall seconds of the paper's full LOSO (68 folds, 100 epochs, 224 px, batch 32) on random inputs of real size."""
    import torch

    import loso
    rng = np.random.default_rng(0)
    counts = {'casme2': (26, 145), 'samm': (28, 133), 'smic': (16, 164)}     # subjects, samples: 68 and 442
    meta = []
    for ds, (subj, n) in counts.items():
        meta += [SimpleNamespace(dataset=ds, subject=str(i % subj), clip=f'{ds}{i}', label=int(rng.integers(3)),
                                 domain='micro') for i in range(n)]
    meta += [SimpleNamespace(dataset='ck+', subject=f'S{i}', clip=f'ck{i}', label=int(rng.integers(3)),
                             domain='macro') for i in range(327)]
    x = torch.from_numpy(rng.standard_normal((len(meta), 3, 224, 224), dtype=np.float32))
    cfg = dict(parts=True, adv=True, ckplus=True, epochs=100, batch_size=32, lr_backbone=1e-5, lr_heads=1e-3,
               lr_step=10, weight_decay=1e-6, grad_clip=1.0, lambda_adv=1.0, seed=0, augment=True,
               select_on_test=False, stack=stack, bf16=True, device=str(device), quiet=False)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        loso.run(x.numpy(), meta, cfg, tmp)
        return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--no-demo', action='store_true', help='skip the full demo LOSO')
    p.add_argument('--protocol', action='store_true', help='time the full 68-fold protocol (hours on a CPU)')
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--child', nargs='+', help=argparse.SUPPRESS)
    a = p.parse_args()
    sys.path.insert(0, str(ROOT))
    if a.child:
        if a.child[0] == 'evm':
            return evm_memory_child()
        if a.child[0] == 'demo':
            return demo_child()
        size, bf16, stack, steps, threads = map(int, a.child[1:])
        return train_child(size, bool(bf16), stack, steps, threads)

    import torch
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    print(f'# bench.py, {time.strftime("%Y-%m-%d %H:%M")}\nmachine: {machine()}\n')

    peak = {'fp32': matmul_peak(device, torch.float32), 'bf16': matmul_peak(device, torch.bfloat16)}
    print('| peak (matmul, all threads) | TFLOP/s |\n|---|---|')
    for k, v in peak.items():
        print(f'| {k} | {v / 1e12:.3f} |')

    print('\n| preprocessing stage (one thread) | s per clip | clips/s/core |\n|---|---|---|')
    for name, t in bench_preprocessing(a.repeats):
        print(f'| {name} | {t:.4f} | {1 / t:.2f} |')
    out = subprocess.run([sys.executable, __file__, '--child', 'evm'], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    extra = m['peak'] - m['base']
    print(f"\nEVM, 200 frames 640x480 (IIR, one thread): {m['seconds']:.1f} s; peak memory beyond the input clip "
          f"{extra / 2**20:.0f} MiB = {extra / m['clip_bytes']:.2f}x the uint8 clip "
          f"({m['clip_bytes'] / 2**20:.0f} MiB), {extra / (4 * m['clip_bytes']):.2f}x a float32 copy")

    print('\n| training (loso.train_group, batch 32 per fold) | size | samples/s | GFLOP/sample | TFLOP/s | '
          'MFU vs same dtype | MFU vs fp32 |\n|---|---|---|---|---|---|---|')
    steps = 12 if device.type == 'cpu' else 40
    configs = [(64, False, 1), (64, True, 1), (64, True, 4), (224, False, 1), (224, True, 1)]
    if device.type == 'cuda':
        configs += [(224, True, 8), (224, True, 17)]
    flop = {s: flops_per_sample(s) for s in {c[0] for c in configs}}
    rates = {}
    for size, bf16, stack in configs:
        n = steps if size == 64 or device.type == 'cuda' else 6
        r = rates[(size, bf16, stack)] = train_rate(size, bf16, stack, n, device)
        dtype = 'bf16' if bf16 else 'fp32'
        name = f'{dtype}{" + channels_last" if stack == 1 else ""}, {stack} fold{"s vmapped" if stack > 1 else ""}'
        print(f'| {name} | {size} | {r:.1f} | {flop[size] / 1e9:.3f} | {r * flop[size] / 1e12:.3f} | '
              f'{r * flop[size] / peak[dtype]:.1%} | {r * flop[size] / peak["fp32"]:.1%} |')
    if device.type == 'cpu' and os.cpu_count() > 1:
        r = concurrent_rate(64, True, steps, procs=os.cpu_count())
        print(f'| bf16 + channels_last, {os.cpu_count()} processes x 1 thread, 1 fold each | 64 | {r:.1f} | '
              f'{flop[64] / 1e9:.3f} | {r * flop[64] / 1e12:.3f} | {r * flop[64] / peak["bf16"]:.1%} | '
              f'{r * flop[64] / peak["fp32"]:.1%} |')
    best = max((v, k) for k, v in rates.items() if k[0] == 224)
    per_epoch = math.ceil((442 + 327) / 32)          # loso's epoch: the whole pool over the batch size
    work = 68 * 100 * per_epoch * 32
    print(f'\nfull protocol (68 folds x 100 epochs x {per_epoch} steps x 32 = {work / 1e6:.2f} M samples at 224, '
          f'{work * flop[224] / 1e15:.1f} PFLOP): at {best[0]:.1f} samples/s ({"bf16" if best[1][1] else "fp32"}, '
          f'stack {best[1][2]}) that is {work / best[0] / 3600:.1f} h on this machine')

    if a.protocol:
        stack = 17 if device.type == 'cuda' else 1
        t = protocol(device, stack)
        print(f'full protocol measured: {t:.0f} s ({t / 60:.1f} min), stack {stack}, {work / t:.0f} samples/s')

    if not a.no_demo:
        out = subprocess.run([sys.executable, __file__, '--child', 'demo'], capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"\n`mer.py --demo` (demo set already built, fresh feature cache and run folder): {m['wall']:.0f} s "
              f"wall, peak RSS of the largest process {m['peak'] / 2**30:.2f} GiB\n{m['table']}")


if __name__ == '__main__':
    sys.exit(main())
