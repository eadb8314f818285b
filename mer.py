"""A Neural Micro-Expression Recognizer (Liu, Du, Zheng, Gedeon, FG 2019): the whole method from one command.

    python mer.py --data ./megc --ckplus ./ck     # Part + Adversarial + EMR, LOSO on MEGC2019, Table I row
    python mer.py --demo                          # the same on the embedded synthetic demo set
    python mer.py --demo --plain                  # the same as the plain calls below, in memory (no run folder)
    python mer.py --demo --table                  # every ablation row of Table I
    python mer.py --demo --save-model             # also one model on every subject: <run folder>/model.pt
    python mer.py predict clip.mp4 --model runs/demo/part_adversarial_emr/model.pt
    python mer.py spot video.mp4 --figure timeline.png   # every expression interval in a long video

The method, in the order a sample meets it (README.md maps each to the paper):
    align.py     §III.A  the face aligned: dlib's detector, 68 landmarks, one similarity transform per clip
    emr.py       §III.C  EMR: the micro apex magnified (evm.py: MIT's magnifier, as settings), the macro apex
                         replaced by the onset-apex middle frame
    flow.py      §III.A  onset -> apex TV-L1 flow as u, v and optical strain
    pipeline.py          the chain of one sample: align -> (apex spotting, find_apex) -> EMR -> flow
    model.py     §III.B  PartNet: ResNet18, eye and mouth part heads, gradient reversal, discriminator; the loss
    train.py     §IV     a fold: its schedule, its step, the epoch loop, its result after the last epoch
    loso.py      §IV     folds by subject; UF1 and UAR as MEGC2019 defines them
    lbptop.py            Table I's baseline: TIM, LBP-TOP, linear SVM
`method` below chains them, as the paper tells it, in plain calls. The folders beside them run the same calls fast
and safe and never enter them: engine/ (the command line, run folders, CUDA graphs, checkpoints, the feature
cache), data/ (the releases' readers, the demo sets), results/ (Table I, intervals over subjects), video/ (predict,
spot), tools/ (bench, fidelity); `python mer.py --demo` runs the engine, and its fold predictions are the plain
path's (tests/test_mer.py).
"""
import dataclasses
import importlib
import sys

import numpy as np

import align
import loso
import pipeline
from data import frames, releases
from engine import cli, logs


def method(samples, cfg, read, weights=None):
    """The paper end to end: (Table I's metrics, the prediction rows) of `samples` (micro and macro, config.Sample)
    under `cfg`, their frames read by read(paths). §III.A-C every sample's network input (pipeline.run: aligned,
    EMR, onset -> apex flow), then §IV the Leave-One-Subject-Out (`loso_predictions`), scored as MEGC2019 does."""
    x = np.stack([pipeline.run(s, cfg, read).x for s in samples])
    rows = loso_predictions(x, samples, cfg, weights)
    return loso.metrics(rows), rows


def loso_predictions(x, samples, cfg, weights=None):
    """§IV: for each micro subject, a fresh PartNet (ImageNet `weights`, or random) trained on every other sample,
    CK+'s macro ones included, for cfg.epochs epochs (train.train); the subject's clips predicted by the model after
    the last epoch. x: the samples' network inputs, (n, 3, size, size). Returns a row per micro clip."""
    import torch

    import train        # here, not above: torch loads in seconds, and --help or a mistyped flag answers before it
    device = torch.device(('cuda' if torch.cuda.is_available() else 'cpu') if cfg.device == 'auto' else cfg.device)
    cfg = dataclasses.replace(cfg, adv=cfg.adv and any(s.domain == 'macro' for s in samples))  # no CK+: no Ladv
    data = train.fold_data(x, samples, device)
    rows = []
    for key, train_idx, test_idx in loso.plan_folds(samples):
        fold = train.new_fold(key, train_idx, test_idx, cfg, len(samples), device, weights)
        train.train(fold, data, cfg)
        last, _, _, _ = train.results(fold, cfg)
        rows += [dict(dataset=samples[i].dataset, subject=samples[i].subject, clip=samples[i].clip,
                      label=samples[i].label, pred=int(p)) for i, p in zip(test_idx, last)]
    return rows


def plain(a, cfg):
    """`mer.py --plain`: `method` on the command line's samples; prints Table I's row."""
    import torch
    from engine import experiment, graphs, weights
    from results import report
    torch.set_num_threads(1)      # as the engine trains on a CPU: a fold's numbers depend on the thread count
    graphs.resolve_device(cfg.device)           # a CUDA device that is not there: said before the features
    micro, macro = experiment.load_samples(a)
    init = None if cfg.init == 'random' else weights.imagenet_weights(a.weights, download=True)
    metrics, _ = method(micro + macro, cfg, frames.read_frames, init)
    print(f'Table I (LOSO over the composite, the plain path):\n\n{report.table([(cfg.row(), metrics)])}')
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['predict']:
        a = cli.predict_parser().parse_args(argv[1:])
        a.argv = argv[1:]
        quiet, work = a.quiet, lambda: importlib.import_module('video.predict').run(a)
    elif argv[:1] == ['spot']:
        a = importlib.import_module('video.command').parse_spot(argv[1:])
        quiet, work = a.quiet, lambda: importlib.import_module('video.longvideo').run(a)
    else:
        a, cfg = cli.parse_args(argv, __doc__)
        quiet, work = cfg.quiet, ((lambda: plain(a, cfg)) if a.plain else
                                  lambda: importlib.import_module('engine.experiment').run(a, cfg))
    from engine import weights          # torch: only once the flags are read
    logs.setup(quiet)
    try:
        return work()
    except (releases.DatasetError, align.FaceNotFound, frames.FrameError, weights.ModelFileError, FileNotFoundError,
            NotADirectoryError) as e:
        # Problems with the user's data or files: one line that names the file and what to do, no traceback.
        raise SystemExit(f'mer.py: error: {e}') from None


# What a stopped `mer.py predict` kept: it has no state to resume from, and --out is rewritten after every clip.
KEPT = 'the clips printed so far are in --out where it was given (predict has no resume: give it the clips not done)'


def console():
    """`python mer.py ...` and the `mer` command of the installed package (pyproject.toml): main, with a stop signal
    or Ctrl-C ending in one line."""
    from engine import checkpoint
    checkpoint.catch_stop_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        checkpoint.ignore_signals()       # a second Ctrl-C must not interrupt the exit with a traceback
        sys.exit('mer.py: interrupted; ' + (KEPT if sys.argv[1:2] == ['predict'] else 'run the same command again to '
                                            'resume'))
    except checkpoint.Stopped as e:
        # SIGTERM or SIGUSR1 (a scheduler pre-empting the job): what was kept, and a status to requeue on.
        checkpoint.ignore_signals()
        print(f'mer.py: stopped by {e.args[0]}; {KEPT}' if sys.argv[1:2] == ['predict'] else checkpoint.message(e),
              file=sys.stderr)
        sys.exit(checkpoint.STOPPED)


if __name__ == '__main__':
    console()
