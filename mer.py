"""A Neural Micro-Expression Recognizer (Liu, Du, Zheng, Gedeon, FG 2019): the whole method from one command.

    python mer.py --data ./megc --ckplus ./ck     # Part + Adversarial + EMR, LOSO on MEGC2019, Table I row
    python mer.py --demo                          # the same on the embedded synthetic demo set
    python mer.py --demo --table                  # every ablation row of Table I
    python mer.py --demo --save-model             # also one model on every subject: <run folder>/model.pt
    python mer.py predict clip.mp4 --model runs/demo/part_adversarial_emr/model.pt
    python mer.py spot video.mp4 --figure timeline.png   # every expression interval in a long video

The method, in the order a sample meets it (README.md maps each to the paper):
    align.py     §III.A  the face aligned: dlib's detector, 68 landmarks, one similarity transform per clip
    emr.py       §III.C  EMR: the micro apex magnified (evm.py: MIT's magnifier, as settings), the macro apex
                         replaced by the onset-apex middle frame
    flow.py      §III.A  onset -> apex TV-L1 flow as u, v and optical strain
    pipeline.py          the chain of one sample: align -> (apex spotting, spot.py) -> EMR -> flow
    model.py     §III.B  PartNet: ResNet18, eye and mouth part heads, gradient reversal, discriminator; the loss
    train.py     §IV     a fold: its schedule, its step, the epoch loop, its result after the last epoch
    loso.py      §IV     folds by subject; UF1 and UAR as MEGC2019 defines them
    lbptop.py            Table I's baseline: TIM, LBP-TOP, linear SVM
The folders beside them run it and never enter it: engine/ (the command line, run folders, CUDA graphs, the
feature cache), data/ (the releases' readers, the demo sets), results/ (Table I, intervals over subjects), video/
(predict, spot), tools/ (bench, fidelity).
"""
import importlib
import sys

import align
from data import frames, releases
from engine import checkpoint, cli, logs, weights


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['predict']:
        a = cli.predict_parser().parse_args(argv[1:])
        a.argv = argv[1:]
        quiet, work = a.quiet, lambda: importlib.import_module('video.predict').run(a)
    elif argv[:1] == ['spot']:
        a = cli.parse_spot(argv[1:])
        quiet, work = a.quiet, lambda: importlib.import_module('video.longvideo').run(a)
    else:
        a, cfg = cli.parse_args(argv, __doc__)
        quiet, work = cfg.quiet, lambda: importlib.import_module('engine.experiment').run(a, cfg)
    logs.setup(quiet)
    try:
        return work()
    except (releases.DatasetError, align.FaceNotFound, frames.FrameError, weights.ModelFileError, FileNotFoundError,
            NotADirectoryError) as e:
        # Problems with the user's data or files: one line that names the file and what to do, no traceback.
        raise SystemExit(f'mer.py: error: {e}') from None


if __name__ == '__main__':
    checkpoint.catch_stop_signals()
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        checkpoint.ignore_signals()       # a second Ctrl-C must not interrupt the exit with a traceback
        sys.exit('mer.py: interrupted; run the same command again to resume')
    except checkpoint.Stopped as e:
        # SIGTERM or SIGUSR1 (a scheduler pre-empting the job): what was kept, and a status to requeue on.
        checkpoint.ignore_signals()
        print(checkpoint.message(e), file=sys.stderr)
        sys.exit(checkpoint.STOPPED)
