"""A Neural Micro-Expression Recognizer (Liu, Du, Zheng, Gedeon, FG 2019): the whole method from one command.

    python mer.py --data ./megc --ckplus ./ck     # Part + Adversarial + EMR, LOSO on MEGC2019, Table I row
    python mer.py --demo                          # the same on the embedded synthetic demo set
    python mer.py --demo --table                  # every ablation row of Table I
    python mer.py --demo --save-model             # also one model on every subject: <run folder>/model.pt
    python mer.py predict clip.mp4 --model runs/demo/part_adversarial_emr/model.pt

Stages: data.py (release folders -> samples) -> inputs.py (align.py, evm.py, flow.py: aligned face, EMR,
onset->apex TV-L1 flow -> u, v, strain; cached) -> model.py (PartNet + gradient reversal) -> train.py (one fold's
training) -> loso.py (Leave-One-Subject-Out, run folder) -> report.py (UF1/UAR, Table I). config.py holds every
setting; the flags below set its fields.
"""
import argparse
import dataclasses
import logging
import os
import sys
import time
from pathlib import Path

import config
from config import DEMO, PAPER, ROWS

log = logging.getLogger('mer')


def _ranged(kind, low=None, high=None, low_open=False):
    """An argparse type that parses `kind` and refuses values outside [low, high] (or (low, high])."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not a{"n integer" if kind is int else " number"}')
        if v != v or (low is not None and (v <= low if low_open else v < low)) or (high is not None and v > high):
            bounds = f'{"(" if low_open else "["}{low if low is not None else "-inf"}, ' \
                     f'{high if high is not None else "inf"}]'
            raise argparse.ArgumentTypeError(f'{text} is outside {bounds}')
        return v
    return parse


POS_INT, NONNEG_INT = _ranged(int, 1), _ranged(int, 0)
POS, NONNEG = _ranged(float, 0, low_open=True), _ranged(float, 0)
# Flags that set a Config field of the same name; None (not given) keeps the preset's value.
FIELDS = ('align_size', 'no_face', 'landmarks', 'apex', 'evm_alpha', 'evm_lambda_c', 'evm_r1', 'evm_r2', 'evm_chroma',
          'flow', 'size', 'epochs', 'batch_size', 'lr_heads', 'lr_step', 'lr_backbone', 'weight_decay', 'grad_clip',
          'lambda_adv', 'precision', 'seed', 'device', 'jobs', 'streams', 'workers')


def parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__.split('\n', 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group('data')
    src.add_argument('--data', help='MEGC2019 folder: combined_3class_gt.csv + CASME II, SAMM, SMIC-HS releases')
    src.add_argument('--ckplus', help='CK+ folder (cohn-kanade-images/, Emotion/): the macro source domain')
    src.add_argument('--index', help='your own sample list instead of --data (columns in README)')
    src.add_argument('--demo', action='store_true', help='build (once) and use the embedded synthetic demo set, with '
                     f'the demo preset: {", ".join(f"{k} {v}" for k, v in demo_changes().items())}')
    src.add_argument('--demo-root', default='demo_data', help='where the demo set is written (default %(default)s)')
    src.add_argument('--strict', action='store_true', help='an annotated frame missing on disk is an error')
    src.add_argument('--skip-bad', action='store_true', help='skip (and list) bad annotation rows, and samples whose '
                     'frames or face cannot be used, instead of failing')
    m = p.add_argument_group('method (paper defaults)')
    m.add_argument('--flow', choices=('tvl1', 'farneback'))
    m.add_argument('--no-emr', action='store_true', help='no magnification of micro apexes / reduction of macro')
    m.add_argument('--no-adv', action='store_true', help='no discriminator (CK+ still trains the classifier)')
    m.add_argument('--no-parts', action='store_true', help='global pooling instead of eye/mouth parts')
    m.add_argument('--table', action='store_true', help='run every row of Table I (LBP-TOP first) and print them')
    m.add_argument('--method', choices=('partnet', 'lbptop'), default='partnet',
                   help='the neural method (default), or the MEGC2019 baseline LBP-TOP + linear SVM alone')
    m.add_argument('--evm-alpha', type=NONNEG, help=f'EVM amplification alpha ({PAPER.evm_alpha})')
    m.add_argument('--evm-lambda-c', type=NONNEG, help='EVM spatial cut-off lambda_c, pixels; 0 = no attenuation '
                   f'({PAPER.evm_lambda_c:g})')
    m.add_argument('--evm-r1', type=_ranged(float, 0, 1, low_open=True), help=f'IIR coefficient r1 ({PAPER.evm_r1:g})')
    m.add_argument('--evm-r2', type=_ranged(float, 0, 1), help='IIR coefficient r2, below r1; r1 1 and r2 0: the '
                   f'change since onset ({PAPER.evm_r2:g}; MIT: --evm-alpha 10 --evm-lambda-c 16 --evm-r1 0.4 '
                   '--evm-r2 0.05)')
    m.add_argument('--evm-chroma', type=NONNEG, help=f'chroma attenuation ({PAPER.evm_chroma})')
    m.add_argument('--align-size', type=_ranged(int, 32), help='side of the aligned face on which flow is computed '
                   f'({PAPER.align_size})')
    m.add_argument('--no-face', choices=('error', 'center'),
                   help='when dlib finds no face: stop with the file name (default) or centre-crop and log it')
    m.add_argument('--landmarks', help="dlib's 68-point .dat file (default: the copy in face-recognition-models)")
    m.add_argument('--apex', choices=('annotated', 'spot'), help='the annotated apex (SMIC-HS: the middle frame; '
                   'default), or the apex spotted from the onset (spot.py) for every sample')
    m.add_argument('--stabilise', action='store_true', help='remove the rigid head motion between onset and each '
                   'frame (align.py; the paper does not)')
    t = p.add_argument_group('training (paper defaults)')
    t.add_argument('--size', type=_ranged(int, 33), help=f'network input side, at least 33 ({PAPER.size})')
    t.add_argument('--epochs', type=POS_INT, help=f'({PAPER.epochs})')
    t.add_argument('--batch-size', type=POS_INT, help=f'({PAPER.batch_size})')
    t.add_argument('--lr-heads', type=NONNEG, help=f'heads and discriminator, halved every --lr-step epochs '
                   f'({PAPER.lr_heads})')
    t.add_argument('--lr-step', type=POS_INT, help=f'({PAPER.lr_step})')
    t.add_argument('--lr-backbone', type=NONNEG, help='trunk (default: 1e-5 on ImageNet weights as in the authors\' '
                   'code; the heads\' rate with --random-init)')
    t.add_argument('--weight-decay', type=NONNEG, help=f'({PAPER.weight_decay})')
    t.add_argument('--grad-clip', type=POS, help=f'max gradient norm per fold ({PAPER.grad_clip})')
    t.add_argument('--lambda-adv', type=NONNEG, help=f'lambda of L = Lt + Lb + Lc - lambda Ladv ({PAPER.lambda_adv})')
    t.add_argument('--seed', type=NONNEG_INT)
    t.add_argument('--weights', help="ResNet18 ImageNet weights (.pth); default: torchvision's cache, else download")
    t.add_argument('--random-init', action='store_true', help='train the trunk from scratch (no ImageNet weights)')
    t.add_argument('--no-augment', action='store_true')
    t.add_argument('--select-on-test', action='store_true',
                   help="also report the authors' per-fold best epoch chosen on the test subject (optimistic)")
    t.add_argument('--precision', choices=('auto', 'bf16', 'fp32'),
                   help='autocast dtype (auto: bf16 on CUDA and on CPUs with fast bf16, else fp32)')
    r = p.add_argument_group('running (never changes a result)')
    r.add_argument('--device', help='auto | cpu | cuda | cuda:N (default auto)')
    r.add_argument('--jobs', type=POS_INT, help='CPU: training processes (default one per core)')
    r.add_argument('--streams', type=POS_INT, help='CUDA: folds trained at once, as CUDA graphs on their own '
                   'streams (default 17, measured on an H100)')
    r.add_argument('--workers', type=POS_INT, help='processes for preprocessing (default one per core)')
    r.add_argument('--out', help='run folder (default runs/<data>/<row>, e.g. runs/demo/part_adversarial_emr)')
    r.add_argument('--cache', default='.cache/features', help='feature cache folder (default %(default)s)')
    r.add_argument('--folds', default='1/1', help='run shard i of n of the folds, e.g. 2/4; a later plain call merges')
    r.add_argument('--figure', help='save onset / apex / magnified apex / flow pictures of a few samples to this PNG')
    r.add_argument('--save-model', action='store_true', help='after the LOSO, train one model on every subject with '
                   "the row's settings and write it to the run folder as model.pt (what `mer.py predict` loads)")
    r.add_argument('--final-only', action='store_true', help='--save-model without the LOSO')
    r.add_argument('-q', '--quiet', action='store_true', help='no progress bars, warnings only')
    return p


def demo_changes():
    """{field: value} where the demo preset differs from the paper's settings."""
    return {k: v for k, v in dataclasses.asdict(DEMO).items() if getattr(PAPER, k) != v}


def parse_args(argv=None):
    """(argparse namespace, Config): the flags checked, and the one configuration built from them."""
    p = parser()
    a = p.parse_args(argv)
    if not (a.data or a.index or a.demo):
        p.error('give --data ./megc (with --ckplus ./ck), --index list.csv, or --demo')
    try:
        i, n = map(int, a.folds.split('/'))
        assert 1 <= i <= n
        a.shard = (i, n)
    except (ValueError, AssertionError):
        p.error(f'--folds {a.folds}: expected i/n with 1 <= i <= n, e.g. 1/4')
    if a.weights and a.random_init:
        p.error('--weights and --random-init contradict each other: give one')
    r1, r2 = (PAPER.evm_r1 if a.evm_r1 is None else a.evm_r1), (PAPER.evm_r2 if a.evm_r2 is None else a.evm_r2)
    if r2 >= r1:
        p.error(f'--evm-r2 {r2:g} must be below --evm-r1 {r1:g} (the band is low-pass r1 minus low-pass r2)')
    if a.final_only and a.method == 'lbptop':
        p.error('--final-only trains the network; the LBP-TOP baseline has no model to save')
    a.save_model = a.save_model or a.final_only
    given = {k: getattr(a, k) for k in FIELDS if getattr(a, k) is not None}
    flags = dict(emr=not a.no_emr, adv=not a.no_adv, parts=not a.no_parts, augment=not a.no_augment,
                 select_on_test=a.select_on_test, quiet=a.quiet, stabilise=a.stabilise)
    if a.random_init:
        flags['init'] = 'random'
    elif a.weights:
        flags['init'] = 'imagenet'
    return a, dataclasses.replace(DEMO if a.demo else PAPER, **given, **flags)


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


def trunk_weights(cfg, path):
    """ImageNet state dict for the trunk (init 'imagenet'), or None (init 'random')."""
    import model
    if cfg.init == 'random':
        return None
    try:
        return model.imagenet_weights(path, download=True)
    except (ValueError, OSError) as e:
        raise SystemExit(f'mer.py: error: {e}') from None


def run_row(a, cfg, micro, macro, weights, out, feats):
    """Runs (or resumes, or merges) the LOSO of one row of Table I; returns its metrics or None."""
    import inputs
    import loso
    if cfg.emr not in feats:
        feats[cfg.emr] = inputs.features(micro + macro, cfg, a.cache, cfg.workers or os.cpu_count(), cfg.quiet,
                                         a.skip_bad)
    x, samples = feats[cfg.emr]
    out.mkdir(parents=True, exist_ok=True)
    loso.check_config(out, dict(config.result_settings(cfg), data=a.data, index=a.index, row=cfg.row()))
    res = None if a.final_only else loso.run(x, samples, cfg, out, weights, a.shard)
    if a.save_model and a.shard == (1, 1) and (res is not None or a.final_only):
        save_final(x, samples, cfg, weights, out)
    return res


def save_final(x, samples, cfg, weights, out):
    """Trains one model on every sample with the row's settings and writes out/model.pt (kept if already there)."""
    import inputs
    import loso
    import model
    path = out / 'model.pt'
    if path.is_file():
        log.info('%s is already there (the run folder\'s settings are checked); delete it to train it again', path)
        return
    net, _ = loso.train_final(x, samples, cfg, weights)
    trained_on = {d: sum(s.dataset == d for s in samples) for d in sorted({s.dataset for s in samples})}
    model.save_model(path, net, config.result_settings(cfg), inputs.pipeline_constants(), config.CLASSES,
                     config.code_version(), trained_on)
    log.info('model saved to %s: %d samples (%s)', path, len(samples), ', '.join(f'{k} {v}' for k, v in
                                                                                   trained_on.items()))


def run_lbptop(a, cfg, micro, out):
    """Runs (or resumes, or merges) Table I's first row, the MEGC2019 baseline LBP-TOP + linear SVM (lbptop.py)."""
    import inputs
    import lbptop
    import loso
    x, samples = inputs.features(micro, cfg, a.cache, cfg.workers or os.cpu_count(), cfg.quiet, a.skip_bad,
                                 kind='lbptop')
    out.mkdir(parents=True, exist_ok=True)
    loso.check_config(out, dict(align_size=cfg.align_size, no_face=cfg.no_face, landmarks=cfg.landmarks,
                                radii=lbptop.RADII, points=lbptop.POINTS, blocks=lbptop.BLOCKS,
                                tim_frames=lbptop.TIM_FRAMES, svm_c=lbptop.SVM_C, data=a.data, index=a.index,
                                row='LBP-TOP'))
    return loso.run_baseline(x, samples, out, lbptop.svm_predict, a.shard)


def predict_parser():
    p = argparse.ArgumentParser(prog='mer.py predict', description='Apply a saved model (model.pt) to your own clips: '
                                'prints "path label p_negative p_positive p_surprise onset apex" per clip.')
    p.add_argument('paths', nargs='+', metavar='PATH', help='a video (mp4, avi, mov; read with OpenCV) or a folder '
                   'of numbered frames')
    p.add_argument('--model', required=True, help='model.pt written by mer.py --save-model')
    p.add_argument('--onset', type=NONNEG_INT, help='onset frame number (a video counts from 0; a folder uses the '
                   'numbers in its file names); default: the first frame')
    p.add_argument('--apex', type=NONNEG_INT, help='apex frame number; default: spotted (spot.py)')
    p.add_argument('--fps', type=POS, help="frame rate (default: the video's own; 200 for a folder of frames)")
    p.add_argument('--domain', choices=('micro', 'macro'), default='micro', help='micro: EMR magnifies the apex '
                   '(default); macro: a posed or broad expression, EMR takes the onset-apex middle frame')
    p.add_argument('--no-face', choices=('error', 'skip'), default='error', help='no face in the onset frame: stop '
                   'naming it (default), or start at the first later frame with a face and say which')
    p.add_argument('--no-stabilise', action='store_true', help='keep the rigid head motion (default: removed)')
    p.add_argument('--max-frames', type=POS_INT, default=1000, help='frames after the onset searched for the apex '
                   '(default %(default)s)')
    p.add_argument('--json', action='store_true', help='one JSON object per clip instead of a line of text')
    p.add_argument('--figure', help='save onset | apex | magnified apex | flow of every clip to this PNG')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar, warnings only')
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['predict']:
        a = predict_parser().parse_args(argv[1:])
        quiet, work = a.quiet, lambda: __import__('predict').run(a)
    else:
        a, cfg = parse_args(argv)
        quiet, work = cfg.quiet, lambda: run(a, cfg)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format='%(asctime)s %(name)s: %(message)s', datefmt='%H:%M:%S')
    import align
    import data
    import model
    try:
        return work()
    except (data.DatasetError, align.FaceNotFound, align.FrameError, model.ModelFileError, FileNotFoundError,
            NotADirectoryError) as e:
        # Problems with the user's data or files: one line that names the file and what to do, no traceback.
        raise SystemExit(f'mer.py: error: {e}') from None


def check_writable(folder, flag):
    """Creates `folder` if needed and checks a file can be written there, before any long work."""
    import tempfile
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise SystemExit(f'mer.py: error: {folder}: cannot write here ({e.strerror or e}); pass another {flag}') \
            from None


def run(a, cfg):
    """Every stage for the rows asked for; prints Table I; returns the exit status."""
    import report
    t0 = time.time()
    if a.demo:
        log.info('demo preset instead of the paper\'s settings: %s (paper: %s)',
                 ', '.join(f'{k} {getattr(cfg, k)}' for k in demo_changes()),
                 ', '.join(f'{k} {getattr(PAPER, k)}' for k in demo_changes()))
    micro, macro = load_samples(a)
    log.info('%d micro samples (%s), %d macro samples, %d subjects', len(micro),
             ', '.join(f'{d} {sum(s.dataset == d for s in micro)}' for d in config.DATASETS), len(macro),
             len({(s.dataset, s.subject) for s in micro}))
    if a.figure:
        figure(micro, cfg, a.figure)
    baseline = (a.table or a.method == 'lbptop') and not a.final_only
    weights = None if a.method == 'lbptop' else trunk_weights(cfg, a.weights)
    rows = ROWS if a.table else [] if a.method == 'lbptop' else [(cfg.parts, cfg.adv, cfg.emr)]
    # Each row gets its own folder, so runs with other flags never collide (a resume checks the settings).
    base = Path(a.out or f"runs/{'demo' if a.demo else Path(a.data or a.index).stem}")
    check_writable(base, '--out')
    check_writable(a.cache, '--cache')
    feats, results, unfinished = {}, [], []
    if baseline:
        out = row_folder(a, base, 'LBP-TOP')
        res = run_lbptop(a, cfg, micro, out)
        if res is None:
            unfinished.append(out)
        else:
            results.append(('LBP-TOP', res))
    for parts, adv, emr in rows:
        row = dataclasses.replace(cfg, parts=parts, adv=adv and bool(macro), emr=emr)
        out = row_folder(a, base, row.row())
        res = run_row(a, row, micro, macro, weights, out, feats)
        if res is None:
            unfinished.append(out)
        else:
            results.append((row.row(), res))
    if a.final_only:
        print('\n'.join(str(out / 'model.pt') for out in unfinished))
        return 0
    if unfinished:
        if a.shard != (1, 1):
            print(f'shard {a.folds} done in {", ".join(map(str, unfinished))}; run again without --folds (or with '
                  'the other shards) to merge')
        else:
            print(f'{", ".join(map(str, unfinished))}: folds that another process is training are still missing; '
                  'run the same command again once it has finished, to merge')
        return 0
    named = [(n, r['honest']) for n, r in results]
    if cfg.select_on_test:
        named += [(n + ' [best epoch chosen on test]', r['selected_on_test']) for n, r in results
                  if 'selected_on_test' in r]
    text = report.table(named)
    where = base if a.table else out
    config.atomic_write(where / 'table.md', text + '\n')
    print(text)
    print(f'\n{where}: fold predictions, megc_log.txt, metrics.json, train_log.csv, curves.png, confusion matrices; '
          f'{time.time() - t0:.0f} s')
    return 0


def slug(name):
    """'Part + Adversarial + EMR' -> 'part_adversarial_emr': a row's sub-folder under --table."""
    return '_'.join(w.lower() for w in name.split(' + '))


def row_folder(a, base, name):
    """The run folder of one row: --out itself for a single row given one, else its own sub-folder of base."""
    return base if a.out and not a.table else base / slug(name)


def figure(samples, cfg, path):
    """Saves, per class, onset | raw apex | magnified apex | flow (raw) | flow (magnified) as one PNG."""
    import cv2
    import numpy as np

    import flow
    import inputs
    path = Path(path)
    if path.suffix.lower() not in ('.png', '.jpg', '.jpeg'):
        raise SystemExit(f'mer.py: error: --figure {path}: give a .png or .jpg file name')
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(cfg, emr=True)
    tiles = []
    for label in (0, 1, 2):
        s = next((s for s in samples if s.label == label), None)
        if s is None:
            continue
        clip = inputs.aligned_clip(s, cfg)
        mag = inputs.emr_apex(clip, s, cfg)
        onset, apex, magnified = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (clip[0], clip[-1], mag))
        f_raw = flow.optical_flow(onset, apex, method=cfg.flow)
        f_mag = flow.optical_flow(onset, magnified, method=cfg.flow)
        tiles.append(np.hstack([clip[0], clip[-1], mag, flow.to_image(f_raw), flow.to_image(f_mag)]))
        log.info('figure: %s %s label %d: mean |flow| raw %.3f px, magnified %.3f px', s.dataset, s.clip, label,
                 np.linalg.norm(f_raw, axis=2).mean(), np.linalg.norm(f_mag, axis=2).mean())
    if not cv2.imwrite(str(path), np.vstack(tiles)):
        raise SystemExit(f'mer.py: error: --figure {path}: could not write the file')
    log.info('figure saved to %s (columns: onset, apex, magnified apex, flow, flow of magnified)', path)


if __name__ == '__main__':
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit('mer.py: interrupted; run the same command again to resume')
