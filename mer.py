"""A Neural Micro-Expression Recognizer (Liu, Du, Zheng, Gedeon, FG 2019): the whole method from one command.

    python mer.py --data ./megc --ckplus ./ck     # Part + Adversarial + EMR, LOSO on MEGC2019, Table I row
    python mer.py --demo                          # the same on the embedded synthetic demo set
    python mer.py --demo --table                  # every ablation row of Table I

Stages: data.py (release folders -> samples) -> align.py (dlib face alignment) -> evm.py (EMR: magnified micro
apex, middle frame for macro) -> flow.py (onset->apex TV-L1 flow -> u, v, strain) -> model.py (PartNet +
gradient reversal) -> loso.py (Leave-One-Subject-Out, UF1/UAR, run folder).
"""
import argparse
import json
import logging
import os
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

log = logging.getLogger('mer')

# The paper's and the authors' code's settings; --demo swaps in DEMO where it differs (and says so).
PAPER = dict(size=224, epochs=100, batch_size=32, lr_backbone=1e-5, lr_heads=1e-3, lr_step=10,
             weight_decay=1e-6, grad_clip=1.0, lambda_adv=1.0, align_size=224)
# The demo has no ImageNet weights (nothing is downloaded here), so the trunk learns from scratch at the heads'
# rate, on 64 px flow images, for 8 epochs: 2 CPU cores run it end to end in under 3 minutes (10 epochs reach a
# higher UF1 in ~3:10; BENCHMARKS.md).
DEMO = dict(size=64, epochs=8, lr_backbone=1e-3, align_size=128)

# Table I's rows of the method and its ablations, as (parts, adversarial, EMR); --table runs them all.
ROWS = [(True, True, True), (True, True, False), (True, False, True), (False, True, True), (False, False, False)]


def row_name(parts, adv, emr):
    """'Part + Adversarial + EMR', 'Global + EMR', ...: the method's name for a combination of flags."""
    return ' + '.join(['Part' if parts else 'Global'] + ['Adversarial'] * adv + ['EMR'] * emr)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__.split('\n', 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group('data')
    src.add_argument('--data', help='MEGC2019 folder: combined_3class_gt.csv + CASME II, SAMM, SMIC-HS releases')
    src.add_argument('--ckplus', help='CK+ folder (cohn-kanade-images/, Emotion/): the macro source domain')
    src.add_argument('--index', help='your own sample list instead of --data (columns in README)')
    src.add_argument('--demo', action='store_true', help='build (once) and use the embedded synthetic demo set')
    src.add_argument('--demo-root', default='demo_data', help='where the demo set is written (default %(default)s)')
    src.add_argument('--strict', action='store_true', help='an annotated frame missing on disk is an error')
    src.add_argument('--skip-bad', action='store_true', help='skip (and list) bad annotation rows instead of failing')
    m = p.add_argument_group('method')
    m.add_argument('--flow', choices=('tvl1', 'farneback'), default='tvl1')
    m.add_argument('--no-emr', action='store_true', help='no magnification of micro apexes / reduction of macro')
    m.add_argument('--no-adv', action='store_true', help='no discriminator (CK+ still trains the classifier)')
    m.add_argument('--no-parts', action='store_true', help='global pooling instead of eye/mouth parts')
    m.add_argument('--table', action='store_true', help='run every row of Table I and print the table')
    m.add_argument('--evm-alpha', type=float, default=10.0, help='EVM amplification alpha')
    m.add_argument('--evm-lambda-c', type=float, default=16.0, help='EVM spatial cut-off lambda_c (pixels)')
    m.add_argument('--evm-r1', type=float, default=0.4)
    m.add_argument('--evm-r2', type=float, default=0.05)
    m.add_argument('--evm-chroma', type=float, default=0.1, help='chroma attenuation')
    m.add_argument('--align-size', type=int, help='side of the aligned face on which flow is computed')
    m.add_argument('--no-face', choices=('error', 'center'), default='error',
                   help='when dlib finds no face: stop with the file name (default) or centre-crop and log it')
    t = p.add_argument_group('training')
    t.add_argument('--size', type=int, help='network input side (paper 224)')
    t.add_argument('--epochs', type=int)
    t.add_argument('--batch-size', type=int)
    t.add_argument('--lr-backbone', type=float)
    t.add_argument('--lr-heads', type=float, help='heads and discriminator, halved every --lr-step epochs')
    t.add_argument('--lr-step', type=int)
    t.add_argument('--weight-decay', type=float)
    t.add_argument('--grad-clip', type=float, help='max gradient norm per fold')
    t.add_argument('--lambda-adv', type=float)
    t.add_argument('--seed', type=int, default=0)
    t.add_argument('--weights', help='ResNet18 ImageNet weights (.pth); default: torchvision\'s cache')
    t.add_argument('--random-init', action='store_true', help='allow training from scratch without ImageNet weights')
    t.add_argument('--no-augment', action='store_true')
    t.add_argument('--select-on-test', action='store_true',
                   help="also report the authors' per-fold best epoch chosen on the test subject (optimistic)")
    t.add_argument('--stack', type=int, help='folds trained together in one vmapped step (default: 1 on CPU, where '
                   'vmap is slower; 17 on GPU)')
    t.add_argument('--precision', choices=('bf16', 'fp32'), default='bf16', help='autocast dtype for training')
    r = p.add_argument_group('running')
    r.add_argument('--device', default='auto', help='auto | cpu | cuda | cuda:N')
    r.add_argument('--out', help='run folder (default runs/<data>/<row>, e.g. runs/demo/part_adversarial_emr)')
    r.add_argument('--cache', default='.cache/features', help='feature cache folder (default %(default)s)')
    r.add_argument('--folds', default='1/1', help='run shard i of n of the folds, e.g. 2/4; a later plain call merges')
    r.add_argument('--workers', type=int, default=os.cpu_count(), help='processes for preprocessing')
    r.add_argument('--jobs', type=int, help='processes training folds at once, sharing the cores (default: one per '
                   'core on CPU, where that beats threads; 1 on GPU)')
    r.add_argument('--figure', help='save onset / apex / magnified apex / flow pictures of a few samples to this PNG')
    r.add_argument('-q', '--quiet', action='store_true')
    a = p.parse_args(argv)
    if not (a.data or a.index or a.demo):
        p.error('give --data ./megc (with --ckplus ./ck), --index list.csv, or --demo')
    preset = dict(PAPER, **(DEMO if a.demo else {}))
    for k, v in preset.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    try:
        i, n = map(int, a.folds.split('/'))
        assert 1 <= i <= n
        a.shard = (i, n)
    except (ValueError, AssertionError):
        p.error(f'--folds {a.folds}: expected i/n with 1 <= i <= n, e.g. 1/4')
    return a


# ----------------------------------------------------------------------------------------------- preprocessing
def stage_params(a, emr):
    """Every parameter that changes a sample's network input: the feature cache key includes all of them."""
    return dict(align_size=a.align_size, no_face=a.no_face, emr=emr, flow=a.flow, size=a.size,
                evm=dict(alpha=a.evm_alpha, lambda_c=a.evm_lambda_c, r1=a.evm_r1, r2=a.evm_r2,
                         chrom_attenuation=a.evm_chroma))


def frames_used(s, emr):
    """(paths of the frames a sample needs, position of its apex among them): EMR's two roles (paper §III.C)."""
    import evm
    if emr and s.domain == 'micro':        # the magnifier needs the clip from onset up to apex
        return s.frames[s.onset:s.apex + 1], s.apex - s.onset
    apex = evm.middle_frame_index(s.onset, s.apex) if emr else s.apex    # macro "reduction": the middle frame
    return (s.frames[s.onset], s.frames[apex]), 1


def sample_input(s, p):
    """(3, size, size) float32 network input of one sample: align -> (EMR) -> onset->apex flow -> u, v, strain."""
    import cv2

    import align
    import evm
    import flow
    paths, apex = frames_used(s, p['emr'])
    clip = align.align_clip(align.read_frames(paths), p['align_size'], name=str(paths[0]), no_face=p['no_face'])
    if p['emr'] and s.domain == 'micro':
        clip = evm.magnify(clip, s.fps, **p['evm'])
    onset, apex = (cv2.cvtColor(clip[i], cv2.COLOR_BGR2GRAY) for i in (0, apex))
    return flow.encode(flow.optical_flow(onset, apex, method=p['flow']), p['size'])


def _cached_input(job):
    import cv2

    import flow
    cv2.setNumThreads(1)      # one process per core: no nested thread pools
    s, p, cache = job
    paths, _ = frames_used(s, p['emr'])
    stats = [(str(q), os.stat(q).st_size, os.stat(q).st_mtime_ns) for q in paths]
    key = flow.cache_key(sample=[s.dataset, s.subject, s.clip, s.fps, s.domain], frames=stats, params=p)
    return flow.cached(cache, key, lambda: sample_input(s, p))


def features(samples, p, cache, workers=1, quiet=False):
    """(N, 3, size, size) float32 inputs, computed once per sample and parameters, in parallel, then cached."""
    from tqdm import tqdm
    jobs = [(s, p, cache) for s in samples]
    t0 = time.time()
    if workers > 1 and len(jobs) > 1:
        with get_context('spawn').Pool(workers) as pool:
            out = list(tqdm(pool.imap(_cached_input, jobs, chunksize=2), total=len(jobs), unit='clip',
                            desc='align+EMR+flow' if p['emr'] else 'align+flow', disable=quiet))
    else:
        out = [_cached_input(j) for j in tqdm(jobs, unit='clip', disable=quiet)]
    log.info('features (EMR %s): %d samples in %.1f s', 'on' if p['emr'] else 'off', len(out), time.time() - t0)
    return np.stack(out)


# ----------------------------------------------------------------------------------------------- the run
def load_samples(a):
    """(micro samples, macro samples) from the command line's sources."""
    import data
    if a.demo:
        import synth
        root = synth.build(a.demo_root, seed=0)
        a.data, a.ckplus = str(root / 'megc'), a.ckplus or str(root / 'ck')
    micro = (data.load_index(a.index, strict=a.strict, skip_bad=a.skip_bad) if a.index else
             data.load_megc(a.data, strict=a.strict, skip_bad=a.skip_bad))
    macro = data.load_ckplus(a.ckplus, skip_bad=a.skip_bad) if a.ckplus else []
    return [s for s in micro if s.domain == 'micro'], macro + [s for s in micro if s.domain == 'macro']


def resolve_device(name):
    import torch
    if name == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit(f'--device {name}: no CUDA device is visible to torch; use --device cpu')
    return name


def trunk_weights(a):
    """ImageNet state dict for the trunk, or None where the user allowed random initialisation."""
    import model
    try:
        w = model.imagenet_weights(a.weights)
    except ValueError as e:     # a file that is not a ResNet18 state dict
        raise SystemExit(f'mer.py: error: {e}') from None
    if w is None:
        msg = f'ResNet18 ImageNet weights not found at {model.imagenet_cache_path()}'
        if not (a.random_init or a.demo):
            raise SystemExit(f'{msg}; pass --weights PATH, copy the file there, or pass --random-init to train '
                             'from scratch')
        log.warning('%s: training from random initialisation', msg)
    return w


def run_row(a, name, parts, adv, emr, micro, macro, weights, out, feats):
    """Runs (or resumes, or merges) the LOSO of one row of Table I; returns its metrics or None."""
    import loso
    samples = micro + macro
    if emr not in feats:
        feats[emr] = features(samples, stage_params(a, emr), a.cache, a.workers, a.quiet)
    adv = adv and bool(macro)
    cfg = dict(parts=parts, adv=adv, emr=emr, ckplus=bool(macro), epochs=a.epochs, batch_size=a.batch_size,
               lr_backbone=a.lr_backbone, lr_heads=a.lr_heads, lr_step=a.lr_step,
               weight_decay=a.weight_decay, grad_clip=a.grad_clip, lambda_adv=a.lambda_adv, seed=a.seed,
               augment=not a.no_augment, select_on_test=a.select_on_test, stack=a.stack, jobs=a.jobs,
               bf16=a.precision == 'bf16', device=a.device, flow=a.flow, size=a.size, align_size=a.align_size,
               weights='imagenet' if weights is not None else 'random', quiet=a.quiet,
               evm=stage_params(a, emr)['evm'], data=a.data, index=a.index, row=name)
    out.mkdir(parents=True, exist_ok=True)
    loso.check_config(out, cfg)
    return loso.run(feats[emr], samples, cfg, out, weights, a.shard)


def main(argv=None):
    a = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if a.quiet else logging.INFO, format='%(asctime)s %(name)s: %(message)s',
                        datefmt='%H:%M:%S')
    import align
    import data
    try:
        return run(a)
    except (data.DatasetError, align.FaceNotFound, FileNotFoundError) as e:
        # Problems with the user's data or files: one line that names the file and what to do, no traceback.
        raise SystemExit(f'mer.py: error: {e}') from None


def run(a):
    """Every stage for the rows asked for; prints Table I; returns the exit status."""
    import torch
    import loso
    t0 = time.time()
    a.device = resolve_device(a.device)
    a.stack = a.stack or (17 if a.device.startswith('cuda') else 1)
    a.jobs = a.jobs or (1 if a.device.startswith('cuda') else os.cpu_count())
    torch.manual_seed(a.seed)
    if a.demo:
        log.info('demo preset instead of the paper\'s settings: %s (paper: %s)',
                 ', '.join(f'{k} {getattr(a, k)}' for k in DEMO),
                 ', '.join(f'{k} {PAPER.get(k, "-")}' for k in DEMO))
    micro, macro = load_samples(a)
    log.info('%d micro samples (%s), %d macro samples, %d subjects', len(micro),
             ', '.join(f'{d} {sum(s.dataset == d for s in micro)}' for d in loso.DATASETS), len(macro),
             len({(s.dataset, s.subject) for s in micro}))
    if a.figure:
        figure(micro, a, a.figure)
    weights = trunk_weights(a)
    rows = ROWS if a.table else [(not a.no_parts, not a.no_adv, not a.no_emr)]
    # Each row gets its own folder, so runs with other flags never collide (a resume checks the settings).
    base = Path(a.out or f"runs/{'demo' if a.demo else Path(a.data or a.index).stem}")
    feats, results = {}, []
    for parts, adv, emr in rows:
        name = row_name(parts, adv and bool(macro), emr)
        out = base if a.out and not a.table else base / slug(name)
        res = run_row(a, name, parts, adv, emr, micro, macro, weights, out, feats)
        if res is None:
            print(f'{out}: shard {a.folds} done; run again without --folds (or with the other shards) to merge')
            return 0
        results.append((name, res))
    named = [(n, r['honest']) for n, r in results]
    if a.select_on_test:
        named += [(n + ' [best epoch chosen on test]', r['selected_on_test']) for n, r in results]
    text = loso.table(named)
    where = base if a.table else out
    (where / 'table.md').write_text(text + '\n')
    print(text)
    print(f'\n{where}: fold predictions, megc_log.txt, metrics.json, confusion matrices; {time.time() - t0:.0f} s')
    return 0


def slug(name):
    """'Part + Adversarial + EMR' -> 'part_adversarial_emr': a row's sub-folder under --table."""
    return '_'.join(w.lower() for w in name.split(' + '))


def figure(samples, a, path):
    """Saves, per class, onset | raw apex | magnified apex | flow (raw) | flow (magnified) as one PNG."""
    import cv2

    import align
    import evm
    import flow
    tiles = []
    for label in (0, 1, 2):
        s = next((s for s in samples if s.label == label), None)
        if s is None:
            continue
        paths, apex = frames_used(s, True)
        clip = align.align_clip(align.read_frames(paths), a.align_size, name=str(paths[0]), no_face=a.no_face)
        mag = evm.magnify(clip, s.fps, **stage_params(a, True)['evm'])
        gray = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (clip[0], clip[apex], mag[apex])]
        f_raw = flow.optical_flow(gray[0], gray[1], method=a.flow)
        f_mag = flow.optical_flow(gray[0], gray[2], method=a.flow)
        tiles.append(np.hstack([clip[0], clip[apex], mag[apex], flow.to_image(f_raw), flow.to_image(f_mag)]))
        log.info('figure: %s %s label %d: mean |flow| raw %.3f px, magnified %.3f px', s.dataset, s.clip, label,
                 np.linalg.norm(f_raw, axis=2).mean(), np.linalg.norm(f_mag, axis=2).mean())
    cv2.imwrite(str(path), np.vstack(tiles))
    log.info('figure saved to %s (columns: onset, apex, magnified apex, flow, flow of magnified)', path)


if __name__ == '__main__':
    sys.exit(main())
