"""Benchmarks, measured in one run on whatever machine this is; the figures go into BENCHMARKS.md.

    python -m tools.bench              # CPU: machine peak, preprocessing, training, a full demo LOSO
    python -m tools.bench --no-demo    # without the demo LOSO (saves its minutes)
    python -m tools.bench --protocol   # GPU: the paper's full 68-fold protocol at real size, and its ceilings
    python -m tools.bench --spot       # apex spotting's error on the demo set; `mer.py predict`'s time per clip
    python -m tools.bench --long       # long-video spotting: frames/s at 640x480 30 fps and where the time goes;
                                       # peak RSS for 1 and 10 minutes of video

(a) preprocessing per stage (alignment, EVM, flow) on a clip of real-dataset size (100 frames at 640x480) and on
    the demo's clips, one thread each, so clips/s is per core; EVM's peak memory on a 200-frame 640x480 clip;
(b) training samples/s of graphs.train_folds itself (augmentation, DANN loss, clipping, fused Adam), at 224 and at
    the demo size, achieved FLOP/s (torch's FLOP counter on one forward+backward) and MFU against the measured
    matmul peak; one process of all threads against one process per core;
(c) wall time and peak memory of `mer.py --demo` with a fresh feature cache and run folder;
(--protocol) the folds replayed per wave as CUDA graphs (1 to 17 streams) against the eager step, the protocol
    timed over 10 epochs and extrapolated to 100 (set-up once, steps x 10), GPU and host memory, and the ceiling
    of one PartNet at batch 544, eager and torch.compiled. It imports neither cv2, dlib nor openpyxl.
Every figure is a median or a steady rate after warm-up (these machines are noisy); ratios come from the same run.
"""
import argparse
import dataclasses
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

if not __package__:       # run as a file (python tools/bench.py), the project's modules are not on the path
    sys.exit('run it as a module from the repository root: .venv/bin/python -m tools.bench (or install the package: '
             'pip install -e .)')

import numpy as np

import config
from engine import cli
from util.workers import usable_cpus

ROOT = Path(__file__).resolve().parents[1]
# The children that measure in a process of their own: this module, run from the repository's root.
SELF = [sys.executable, '-m', 'tools.bench']


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

    from data import synth
    rng = np.random.default_rng(seed)
    face, lm = synth.identity(synth.photos()[1], rng)
    k = h / face.shape[0]
    face = cv2.resize(face, (w, h), interpolation=cv2.INTER_CUBIC)
    lm = lm * k
    onset, apex = 10, 50
    field = synth.deformation(lm, synth.POS, face.shape[:2], 1.5 * k)
    drift = synth.head_drift(rng, 0.3)
    return synth.render(face, field, synth.profile(frames, onset, apex, 90), rng, drift=drift), onset, apex


def bench_preprocessing(repeats):
    """Per-stage seconds per clip on one core: a real-size clip, and whole samples of the demo set."""
    import cv2
    import torch

    import align
    import emr
    import evm
    import flow
    from data import releases, synth
    from engine import cache
    cv2.setNumThreads(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    clip, onset, apex = real_size_clip()
    al, _ = align.align_clip(clip, 224)
    mag = evm.magnify(al)
    g0, g1 = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (mag[onset], mag[apex]))
    f = flow.optical_flow(g0, g1)
    stages = [('align (dlib on onset, warp 100 frames) 640x480 -> 224', lambda: align.align_clip(clip, 224)),
              ('  of which dlib detect + 68 landmarks, one 640x480 frame', lambda: align.detect_landmarks(clip[0])),
              ("EMR's magnified apex 224x224 (emr.magnify, two frames)", lambda: emr.magnify(al[onset], al[apex])),
              ("MIT's EVM, 100 frames 224x224 (IIR, alpha 10; evm.magnify)", lambda: evm.magnify(al)),
              ('TV-L1 flow onset->apex 224x224', lambda: flow.optical_flow(g0, g1)),
              ('Farneback flow onset->apex 224x224', lambda: flow.optical_flow(g0, g1, method='farneback')),
              ('encode u, v, strain -> 3x224x224', lambda: flow.encode(f, 224))]
    for name, fn in stages:
        rows.append((name, median_time(fn, repeats)))
    per_clip = sum(t for n, t in rows if not n.startswith(' ') and 'Farneback' not in n and "MIT's" not in n)
    rows.append(('real-size sample, align + EMR + TV-L1 + encode (sum)', per_clip))

    # The demo's own samples, through the very function the pipeline caches (no cache here).
    root = synth.build(ROOT / 'demo_data', seed=0)
    cfg = config.DEMO
    micro, macro = releases.load_megc(root / 'megc'), releases.load_ckplus(root / 'ck')
    picks = micro[::max(1, len(micro) // 12)][:12] + macro[::max(1, len(macro) // 6)][:6]
    times = {True: [], False: []}
    for on in (True, False):
        for s in picks:
            t0 = time.perf_counter()
            cache.flow_input(s, dataclasses.replace(cfg, emr=on))
            times[on].append(time.perf_counter() - t0)
    rows.append((f'demo sample with EMR (align {cfg.align_size}, {len(picks)} samples, median)',
                 statistics.median(times[True])))
    rows.append(('demo sample without EMR (median)', statistics.median(times[False])))
    lbp = []
    for s in picks[:12]:            # the micro samples: the baseline row does not use CK+
        t0 = time.perf_counter()
        cache.lbptop_input(s, cfg)
        lbp.append(time.perf_counter() - t0)
    rows.append(('demo sample, LBP-TOP baseline: align onset..end, TIM to 10, LBP-TOP (median of 12)',
                 statistics.median(lbp)))
    torch.set_num_threads(threads)
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
    evm.magnify(clip)
    dt = time.perf_counter() - t0
    peak = peak_rss()
    print(json.dumps(dict(seconds=dt, clip_bytes=clip.nbytes, base=base, peak=peak)))


# ----------------------------------------------------------------------------------------------- long videos
def long_frames_640(seconds, fps=30.0, seed=0, scale=2):
    """A long demo video (synth.long_script) rendered at scale x 320x240, one frame at a time."""
    import cv2

    from data import synth
    rng = np.random.default_rng(seed)
    pics = synth.photos()
    faces = [synth.identity(pics[i % 2], rng) for i in range(2)]
    n, events = synth.long_script(rng, seconds, fps)
    for f in synth.long_frames(faces, n, events, rng):
        yield cv2.resize(f, (f.shape[1] * scale, f.shape[0] * scale), interpolation=cv2.INTER_LINEAR) \
            if scale != 1 else f


def long_speed(seconds=30.0, repeats=3):
    """(frames/s of longvideo.spot_video on a 640x480 30-fps MJPG AVI, median of `repeats`; the seconds per frame
    of each part from one profiled run)."""
    import cProfile
    import pstats

    import cv2

    from video import longvideo
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / 'long640.avi'
        w = None
        for f in long_frames_640(seconds):
            if w is None:
                w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 30.0, f.shape[1::-1])
            w.write(f)
        w.release()
        video = longvideo.open_video(path)
        t = median_time(lambda: longvideo.spot_video(video, quiet=True), repeats, warmup=0)
        prof = cProfile.Profile()
        prof.enable()
        n = longvideo.spot_video(video, quiet=True)[2]['frames']
        prof.disable()
    st = pstats.Stats(prof).stats
    # Built-ins are named '{method 'read' of ...}' or '<method 'read' of ...>' by Python's version: matched by
    # the words in them.
    parts = {'decode (cv2 read / grab)': (('VideoCapture', "'read'"), ('VideoCapture', "'grab'")),
             'face detection (dlib HOG)': (('_dlib_pybind11.run',),),
             'landmarks (dlib, at each new face)': (('face_transform',),),
             'landmarks (dlib, about 15 a second: the mouth and the head)': (('landmarks_at',),),
             'expression classifier (video/emotion.py, in the same frames)': (('emotion_at',),),
             'Farneback flow (head motion + MDMD)': (('calcOpticalFlowFarneback',),),
             'MDMD regions (numpy, rigid part removed)': (('mdmd',),),
             'aligned small face (warp, resize, blur)': (('small_face',),),
             'settling (intervals.online: spot on the last 10 min of the curve, every 0.5 s)':
             (('spot', 'intervals.py'),)}
    out = {}
    for name, keys in parts.items():
        total = 0.0
        for (file, line, fn), (cc, nc, tt, ct, callers) in st.items():
            if any(all(w in f'{file}:{fn}' for w in key) for key in keys):
                total += ct
        out[name] = total / n
    everything = max(ct for (cc, nc, tt, ct, callers) in st.values())
    out['everything'] = everything / n
    return n / t, out


def long_memory_child(seconds, model=None):
    """Run in a child process: peak RSS of longvideo.spot_video (read once as a stream, intervals given as they
    settle; with a model each recognised from the frames it keeps) over `seconds` of a 640x480 30-fps video
    generated on the fly (no file: the stream is what is measured)."""
    from video import longvideo, predict
    model = predict.load(model, stabilise=True, quiet=True) if model else None
    making = [0.0]

    def generated(frames):                  # the time spent making the frames is not spotting's
        while True:
            t = time.perf_counter()
            f = next(frames, None)
            making[0] += time.perf_counter() - t
            if f is None:
                return
            yield f
    video = longvideo.memory_video(generated(long_frames_640(float(seconds))), 30.0, 'generated')
    t0 = time.perf_counter()
    found, _, curve = longvideo.spot_video(video, quiet=True, model=model)
    print(json.dumps(dict(seconds=float(seconds), wall=time.perf_counter() - t0, making=making[0], peak=peak_rss(),
                          frames=int(curve['frames']), intervals=len(found))))


def live_run(seconds, model=None):
    """A live run as a camera would feed it: `seconds` of a generated 640x480 30-fps video written to an MJPG AVI,
    then `mer.py spot FILE --live` (read at its own rate by the reader thread) in a child process. Returns the
    child's peak RSS, the frames it dropped, each interval's delay (seconds after its last frame arrived), and the
    intervals against those of the file mode (`mer.py spot FILE`) on the same file."""
    import cv2
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / 'live.avi'
        w = None
        for f in long_frames_640(float(seconds)):
            if w is None:
                w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 30.0, f.shape[1::-1])
            w.write(f)
        w.release()
        extra = ['--model', model] if model else []

        def spot(*flags):
            child = ('import resource, runpy, sys; sys.argv = ["mer.py", *sys.argv[1:]]\n'
                     'try:\n    runpy.run_path("mer.py", run_name="__main__")\nfinally:\n'
                     '    print("PEAK", open("/proc/self/status").read().split("VmHWM:")[1].split()[0],\n'
                     '          file=sys.stderr)')
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, '-c', child, 'spot', str(path), '--json', '-q', *extra, *flags],
                               capture_output=True, text=True)
            lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith('{')]
            peak = int(r.stderr.split('PEAK')[-1].split()[0]) * 1024
            dropped = r.stderr.count('frames dropped')
            return lines, peak, time.perf_counter() - t0, dropped
        live, peak, wall, dropped = spot('--live')
        filed, _, _, _ = spot()
    key = [(x['onset'], x['offset'], x['kind']) for x in live]
    return dict(seconds=seconds, wall=wall, peak=peak, dropped_warnings=dropped, intervals=len(live),
                same=key == [(x['onset'], x['offset'], x['kind']) for x in filed],
                delays=[x['delay_s'] for x in live])


# ----------------------------------------------------------------------------------------------- training
def flops_per_sample(size, parts=True, device='cpu'):
    """FLOPs of one training sample: forward + backward of PartNet, counted by torch (convs and matmuls)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import model
    net = model.PartNet(parts=parts).to(device)
    x = torch.randn(4, 3, size, size, device=device)
    with FlopCounterMode(display=False) as fc:
        out = net(x)
        zeros = torch.zeros(4, dtype=torch.long, device=device)
        model.losses(out, zeros, zeros)[0].backward()
    return fc.get_total_flops() / 4


class _Clock:
    """Stands in for the progress bar of graphs.train_folds: times the steps after `skip` warm-up steps."""

    def __init__(self, device, total, skip=5):
        self.device, self.total, self.skip, self.n, self.t = device, total, skip, 0, []

    def update(self, n):
        self.n += 1
        if self.n in (self.skip, self.total):
            sync(self.device)
            self.t.append((self.n, time.perf_counter()))

    def rate(self, samples_per_step):
        (n0, t0), (n1, t1) = self.t[0], self.t[-1]
        return samples_per_step * (n1 - n0) / (t1 - t0)


def synthetic_set(n_micro, n_subjects, n_macro, size, seed=0):
    """(x, meta) of random inputs with the composite's shape: n_micro samples of n_subjects, n_macro CK+ samples."""
    rng = np.random.default_rng(seed)
    meta = [SimpleNamespace(dataset=('casme2', 'samm', 'smic')[i % n_subjects % 3], subject=str(i % n_subjects),
                            clip=f'c{i}', label=int(rng.integers(3)), domain='micro') for i in range(n_micro)]
    meta += [SimpleNamespace(dataset='ck+', subject=f'S{i}', clip=f'ck{i}', label=int(rng.integers(3)),
                             domain='macro') for i in range(n_macro)]
    return rng.standard_normal((len(meta), 3, size, size), dtype=np.float32), meta


def train_rate(cfg, device, folds=1, steps=40, use_graphs=None):
    """Steady samples/s of graphs.train_folds on `folds` folds at once (one wave), after 5 warm-up steps."""
    import loso
    import train
    from engine import graphs
    x, meta = synthetic_set(2 * cfg.batch_size, 2 * folds, 2 * cfg.batch_size, cfg.size)   # 4 steps an epoch
    specs = loso.plan_folds(meta)[:folds]
    data = train.fold_data(x, meta, device)
    cfg = dataclasses.replace(cfg, epochs=max(2, math.ceil(steps / 4)))
    clock = _Clock(device, 4 * cfg.epochs)
    for _ in graphs.train_folds(specs, data, len(meta), cfg, device, streams=folds, use_graphs=use_graphs,
                                  progress=clock):
        pass
    return clock.rate(cfg.batch_size * folds)


def train_child(size, bf16, steps, threads):
    import torch
    torch.set_num_threads(threads)
    cfg = cli.run_config(config.PAPER, size=size, precision='bf16' if bf16 else 'fp32')
    print(json.dumps(dict(rate=train_rate(cfg, torch.device('cpu'), steps=steps))))


def concurrent_rate(size, bf16, steps, procs=2):
    """Total samples/s of `procs` processes, one thread each, training one fold each at the same time."""
    cmd = [*SELF, '--child', 'train', str(size), str(int(bf16)), str(steps), '1']
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    return sum(json.loads(p.communicate()[0].strip().splitlines()[-1])['rate'] for p in ps)


def ceiling(device, batch=544, compiled=False, steps=20):
    """Samples/s of ONE PartNet trained at `batch` (bf16, channels_last, fused Adam), eager or torch.compiled."""
    import torch

    import model
    torch.manual_seed(0)
    net = model.PartNet().to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, fused=True)
    fwd = torch.compile(net) if compiled else net
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y, d = torch.randint(0, 3, (batch,), device=device), torch.randint(0, 2, (batch,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, torch.bfloat16):
            loss = model.losses(fwd(x, 0.5), y, d)[0]
        loss.backward()
        opt.step()
        sync(device)
    return batch / median_time(step, steps, warmup=3)


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
class _WaveClock:
    """Progress stand-in for graphs.train_folds: per wave of folds, the seconds of its training steps."""

    def __init__(self, device, steps):
        self.device, self.steps, self.n, self.t0, self.train = device, steps, 0, None, 0.0

    def update(self, n):
        self.n += 1
        if self.n % self.steps == 1:            # the wave's first step is queued: its graphs are captured
            sync(self.device)
            self.t0 = time.perf_counter()
        elif self.n % self.steps == 0:
            sync(self.device)
            self.train += time.perf_counter() - self.t0


def protocol(device, streams, epochs=10, size=224):
    """The paper's LOSO (68 folds, 224 px, batch 32, `epochs` epochs) on random inputs of the composite's size.

    Returns (wall s, of which training steps s, samples trained, GPU peak bytes); graphs.train_folds is the very
    function runfolder.run calls."""
    import torch

    import loso
    import train
    from engine import graphs
    x, meta = synthetic_set(442, 68, 327, size)
    cfg = cli.run_config(config.PAPER, size=size, epochs=epochs, init='random', device=str(device), quiet=True)
    specs = loso.plan_folds(meta)
    data = train.fold_data(x, meta, device)
    steps = train.steps_per_epoch(len(meta), cfg.batch_size) * epochs
    clock = _WaveClock(device, steps)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in graphs.train_folds(specs, data, len(meta), cfg, device, streams=streams, progress=clock):
        pass
    wall = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated() if device.type == 'cuda' else 0
    return wall, clock.train, len(specs) * steps * cfg.batch_size, mem


def gpu_protocol(epochs, sweep=True):
    """`python -m tools.bench --protocol`: folds per wave measured, the protocol timed, and the ceilings, in one run.

    sweep=False times the protocol alone with the defaults (graphs.CUDA_STREAMS folds per wave)."""
    import torch
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.type != 'cuda':
        raise SystemExit('python -m tools.bench --protocol: no CUDA device visible; the protocol is a GPU job (92 h on 2 cores)')
    torch.backends.cudnn.benchmark = True
    print(f'# python -m tools.bench --protocol, {time.strftime("%Y-%m-%d %H:%M")}\nmachine: {machine()}\n', flush=True)
    peak = matmul_peak(device, torch.bfloat16)
    flop = flops_per_sample(224, device=device)
    print(f'bf16 matmul peak (8192^3): {peak / 1e12:.0f} TFLOP/s; PartNet at 224: {flop / 1e9:.2f} GFLOP per '
          'training sample (forward + backward)\n', flush=True)
    print('| training, 224 px, bf16, batch 32 per fold | samples/s | MFU (bf16 peak) | set-up + 60 steps |\n'
          '|---|---|---|---|', flush=True)
    cfg = cli.run_config(config.PAPER, init='random')
    rates = {}
    from engine import graphs
    for name, folds, use_graphs in () if not sweep else (('eager step, 1 fold', 1, False), ('CUDA graph, 1 fold', 1, True),
                                                     ('CUDA graphs, 4 folds on 4 streams', 4, True),
                                                     ('CUDA graphs, 8 folds on 8 streams', 8, True),
                                                     ('CUDA graphs, 17 folds on 17 streams', 17, True)):
        t0 = time.perf_counter()
        try:
            r = train_rate(cfg, device, folds, steps=60, use_graphs=use_graphs)
        except Exception as e:      # one failing configuration must not lose the other figures
            print(f'| {name} | failed: {type(e).__name__}: {str(e)[:200]} | |', flush=True)
            continue
        if use_graphs:
            rates[folds] = r
        print(f'| {name} | {r:,.0f} | {r * flop / peak:.1%} | {time.perf_counter() - t0:.0f} s |', flush=True)
    best = max(rates, key=rates.get) if sweep else graphs.CUDA_STREAMS
    wall, steps_s, samples, mem = protocol(device, best, epochs)
    setup = wall - steps_s
    full = setup + steps_s * 100 / epochs
    rate = samples / steps_s
    print(f'\nprotocol, 68 folds x {epochs} epochs, {best} folds per wave: {wall:.1f} s '
          f'wall, of which set-up, capture and evaluation {setup:.1f} s and training steps {steps_s:.1f} s = '
          f'{rate:,.0f} samples/s ({rate * flop / peak:.1%} MFU); GPU memory peak {mem / 2**30:.1f} GiB, host peak '
          f'RSS {peak_rss() / 2**30:.1f} GiB', flush=True)
    print(f'full protocol (100 epochs), extrapolated: {setup:.0f} s + 10 x {steps_s:.0f} s = {full:.0f} s '
          f'({full / 60:.1f} min), {samples * 100 / epochs / full:,.0f} samples/s overall', flush=True)
    for compiled in (False, True) if sweep else ():
        try:
            c = ceiling(device, compiled=compiled)
        except Exception as e:      # a compiler missing on the machine must not lose the figures above
            print(f'ceiling ({"compiled" if compiled else "eager"}): failed: {type(e).__name__}: {e}', flush=True)
            continue
        print(f'ceiling: one PartNet at batch 544, {"torch.compile" if compiled else "eager"}: {c:,.0f} samples/s '
              f'({c * flop / peak:.1%} MFU); the protocol\'s training steps reach {rate / c:.2f} of it', flush=True)


def spot_error(root='demo_data', align_size=config.DEMO.align_size):
    """{dataset: (mean, median |spotted - true apex| in frames, the same for the middle frame, clips)} on the demo
    set, whose true apex (the peak of each clip's motion profile, truth.json) is known for every clip."""
    import json

    import align
    import pipeline
    from data import releases, synth
    from data.frames import read_frames
    root = synth.build(root, seed=0)
    truths = json.loads((root / 'truth.json').read_text())
    out = {}
    for s in releases.load_megc(root / 'megc') + releases.load_ckplus(root / 'ck'):
        true = int(np.argmax(truths[f'{s.dataset}/{s.subject}/{s.clip}']['profile'])) - s.onset
        clip, _ = align.align_clip(read_frames(s.frames[s.onset:]), align_size)
        out.setdefault(s.dataset, []).append((abs(pipeline.find_apex(clip, s.fps) - true),
                                              abs((len(s.frames) - s.onset) // 2 - true)))
    return {d: (np.mean(e[:, 0]), np.median(e[:, 0]), np.mean(e[:, 1]), np.median(e[:, 1]), len(e))
            for d, e in ((d, np.array(v)) for d, v in out.items())}


def predict_time(model_path, repeats=5, threads=2):
    """(median seconds of `mer.py predict`'s work on one 100-frame 640x480 mp4 clip (bench.real_size_clip), the
    model loaded once, the apex spotted; seconds per clip of each part from one profiled run)."""
    import cProfile
    import pstats

    import cv2
    import torch

    import config
    from video import predict
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    clip, _, _ = real_size_clip()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / 'clip.mp4'
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 30.0, (640, 480))
        for f in clip:
            w.write(f)
        w.release()
        model = predict.load(model_path, stabilise=True, quiet=True)

        def one():
            return predict.predict_clip(predict.open_clip(path), model, config.CLASSES)
        t = median_time(one, repeats)
        prof = cProfile.Profile()
        prof.enable()
        one()
        prof.disable()
    st = pstats.Stats(prof).stats
    parts = {'decode (cv2 read)': (('VideoCapture', "'read'"),),
             'face detection (dlib HOG)': (('_dlib_pybind11.run',),),
             'apex spotting on the 64-px face (Farneback, head motion)': (('spot_apex',),),
             'alignment of onset and apex (landmarks, head motion)': (('align_frames',),),
             'TV-L1 flow, onset -> apex': (("'calc'", 'DenseOpticalFlow'),),
             'the network': (('probabilities',),)}
    out = {}
    for name, keys in parts.items():
        out[name] = sum(ct for (file, line, fn), (cc, nc, tt, ct, callers) in st.items()
                        if any(all(w in fn for w in key) for key in keys))
    out['everything'] = max(ct for (cc, nc, tt, ct, callers) in st.values())
    return t, out


def main():
    p = argparse.ArgumentParser(prog='python -m tools.bench', description=__doc__.split('\n')[0])
    p.add_argument('--no-demo', action='store_true', help='skip the full demo LOSO')
    p.add_argument('--protocol', action='store_true', help='on a GPU: the full 68-fold protocol and its ceilings')
    p.add_argument('--epochs', type=int, default=10, help='epochs timed by --protocol (extrapolated to 100)')
    p.add_argument('--no-sweep', action='store_true', help='--protocol: the protocol with the defaults only')
    p.add_argument('--repeats', type=int, default=5, help='timed calls per figure of the preprocessing; '
                   'each figure is their median (default %(default)s)')
    p.add_argument('--spot', action='store_true', help="apex spotting's error on the demo set, and predict's time "
                   'per clip (needs --model)')
    p.add_argument('--model', help="--spot: the model.pt that predict is timed with; --long: spot's memory with "
                   'recognition too')
    p.add_argument('--long', action='store_true', help='long-video spotting: frames/s at 640x480 and where the time '
                   'goes, peak RSS for 1 and 10 minutes of video')
    p.add_argument('--live', type=float, metavar='MINUTES', help='a live run (--live: a generated file read at its own '
                   'rate) of this many minutes: peak RSS, delays, and its intervals against the file mode\'s')
    p.add_argument('--child', nargs='+', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.spot:
        print(f'# python -m tools.bench --spot, {time.strftime("%Y-%m-%d %H:%M")}\nmachine: {machine()}\n')
        print('| dataset (demo) | clips | spotted: mean abs error | median | middle frame: mean | median |\n'
              '|---|---|---|---|---|---|')
        for d, (m, med, mm, mmed, n) in spot_error().items():
            print(f'| {d} | {n} | {m:.2f} | {med:.1f} | {mm:.2f} | {mmed:.1f} |', flush=True)
        if a.model:
            t, parts = predict_time(a.model)
            print(f'\n`mer.py predict` on a 100-frame 640x480 mp4, apex spotted, 2 threads, the model loaded once: '
                  f'{t:.2f} s per clip (median of 5)\n\n| part (one profiled run) | s per clip |\n|---|---|')
            for k, v in parts.items():
                print(f'| {k} | {v:.3f} |', flush=True)
        return 0
    if a.protocol:
        return gpu_protocol(a.epochs, not a.no_sweep)
    if a.live:
        print(f'# python -m tools.bench --live {a.live:g}, {time.strftime("%Y-%m-%d %H:%M")}\nmachine: {machine()}\n')
        m = live_run(60 * a.live, a.model)
        d = np.array(m['delays'] or [np.nan])
        print(f"live: {m['seconds'] / 60:g} min of 640x480 at 30 fps{', recognised' if a.model else ''}: "
              f"{m['intervals']} intervals, the same as the file mode's: {m['same']}; frames dropped: "
              f"{'yes' if m['dropped_warnings'] else 'none'}; delay after an interval's last frame: median "
              f"{np.median(d):.2f} s, max {d.max():.2f} s; peak RSS {m['peak'] / 2**20:.0f} MiB; "
              f"wall {m['wall']:.0f} s")
        return 0
    if a.long:
        print(f'# python -m tools.bench --long, {time.strftime("%Y-%m-%d %H:%M")}\nmachine: {machine()}\n')
        rate, parts = long_speed()
        print(f'spotting a 30-s 640x480 30-fps MJPG video (longvideo.spot_video, median of 3): {rate:.1f} frames/s\n'
              '\n| part (one profiled run) | ms per frame |\n|---|---|')
        for k, v in parts.items():
            print(f'| {k} | {1000 * v:.2f} |', flush=True)
        print('\n| video (640x480, 30 fps, generated on the fly) | frames | intervals | wall s | of which making the '
              'frames | spotting: x real time | peak RSS |\n|---|---|---|---|---|---|---|')
        for model in [None] + [a.model] * bool(a.model):
            for sec in (60, 600):
                out = subprocess.run([*SELF, '--child', 'long', str(sec), *[model] * bool(model)],
                                     capture_output=True, text=True, check=True)
                m = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {sec / 60:.0f} min{', recognised (--model)' if model else ''} | {m['frames']} | "
                      f"{m['intervals']} | {m['wall']:.0f} | {m['making']:.0f} | "
                      f"{sec / (m['wall'] - m['making']):.2f} | {m['peak'] / 2**20:.0f} MiB |", flush=True)
        return 0
    if a.child:
        if a.child[0] == 'long':
            return long_memory_child(*a.child[1:])
        if a.child[0] == 'evm':
            return evm_memory_child()
        if a.child[0] == 'demo':
            return demo_child()
        size, bf16, steps, threads = map(int, a.child[1:])
        return train_child(size, bool(bf16), steps, threads)

    import torch
    device = torch.device('cpu')
    print(f'# python -m tools.bench, {time.strftime("%Y-%m-%d %H:%M")}\nmachine: {machine()}\n')

    # bf16 only where the CPU is fast at it (train.bf16's 'auto'): elsewhere a 2048^3 bf16 matmul takes ~1 minute
    # and oneDNN's bf16 convolution is ~8x slower than fp32.
    fast_bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    peak = {'fp32': matmul_peak(device, torch.float32)}
    if fast_bf16:
        peak['bf16'] = matmul_peak(device, torch.bfloat16)
    print('| peak (matmul, all threads) | TFLOP/s |\n|---|---|')
    for k, v in peak.items():
        print(f'| {k} | {v / 1e12:.3f} |')
    if not fast_bf16:
        print('| bf16 | not measured: this CPU has no fast bf16 (no AVX-512 / AMX); training uses fp32 here |')

    print('\n| preprocessing stage (one thread) | s per clip | clips/s/core |\n|---|---|---|')
    for name, t in bench_preprocessing(a.repeats):
        print(f'| {name} | {t:.4f} | {1 / t:.2f} |')
    out = subprocess.run([*SELF, '--child', 'evm'], capture_output=True, text=True, check=True)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    extra = m['peak'] - m['base']
    print(f"\nEVM, 200 frames 640x480 (IIR, one thread): {m['seconds']:.1f} s; peak memory beyond the input clip "
          f"{extra / 2**20:.0f} MiB = {extra / m['clip_bytes']:.2f}x the uint8 clip "
          f"({m['clip_bytes'] / 2**20:.0f} MiB), {extra / (4 * m['clip_bytes']):.2f}x a float32 copy")

    print('\n| training (graphs.train_folds, batch 32, one fold) | size | samples/s | GFLOP/sample | TFLOP/s | '
          'MFU vs same dtype | MFU vs fp32 |\n|---|---|---|---|---|---|---|')
    flop = {s: flops_per_sample(s) for s in (64, 224)}
    rates = {}
    for size, bf16, steps in ((64, False, 20), (64, True, 20), (224, False, 10), (224, True, 10)):
        if bf16 and not fast_bf16:
            continue
        cfg = cli.run_config(config.PAPER, size=size, precision='bf16' if bf16 else 'fp32', init='random')
        r = rates[(size, bf16)] = train_rate(cfg, device, steps=steps)
        dtype = 'bf16' if bf16 else 'fp32'
        print(f'| {dtype}, channels_last, {torch.get_num_threads()} threads | {size} | {r:.1f} | '
              f'{flop[size] / 1e9:.3f} | {r * flop[size] / 1e12:.3f} | {r * flop[size] / peak[dtype]:.1%} | '
              f'{r * flop[size] / peak["fp32"]:.1%} |', flush=True)
    cpus = usable_cpus()
    if cpus > 1:
        r = concurrent_rate(64, fast_bf16, 20, procs=cpus)
        print(f'| {"bf16" if fast_bf16 else "fp32"}, channels_last, {cpus} processes x 1 thread, 1 fold '
              f'each | 64 | {r:.1f} | {flop[64] / 1e9:.3f} | {r * flop[64] / 1e12:.3f} | '
              f'{r * flop[64] / peak["bf16" if fast_bf16 else "fp32"]:.1%} | {r * flop[64] / peak["fp32"]:.1%} |')
    best = max(v for k, v in rates.items() if k[0] == 224)
    work = 68 * 100 * math.ceil((442 + 327) / 32) * 32
    print(f'\nfull protocol ({work / 1e6:.2f} M samples at 224, {work * flop[224] / 1e15:.1f} PFLOP): at {best:.1f} '
          f'samples/s that is {work / best / 3600:.1f} h on this machine')

    if not a.no_demo:
        out = subprocess.run([*SELF, '--child', 'demo'], capture_output=True, text=True, check=True)
        m = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"\n`mer.py --demo` (demo set already built, fresh feature cache and run folder): {m['wall']:.0f} s "
              f"wall, peak RSS of the largest process {m['peak'] / 2**30:.2f} GiB\n{m['table']}")


if __name__ == '__main__':
    sys.exit(main())
