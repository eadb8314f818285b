"""A Neural Micro-Expression Recognizer (Liu, Du, Zheng, Gedeon, FG 2019): the whole method from one command.

    python mer.py --data ./megc --ckplus ./ck     # Part + Adversarial + EMR, LOSO on MEGC2019, Table I row
    python mer.py --demo                          # the same on the embedded synthetic demo set
    python mer.py --demo --table                  # every ablation row of Table I
    python mer.py --demo --save-model             # also one model on every subject: <run folder>/model.pt
    python mer.py predict clip.mp4 --model runs/demo/part_adversarial_emr/model.pt
    python mer.py spot video.mp4 --figure timeline.png   # every expression interval in a long video

The method: pipeline.py (align.py, emr.py, flow.py: aligned face, EMR, onset->apex TV-L1 flow -> u, v, strain)
-> model.py (PartNet, gradient reversal, the loss) -> train.py (one training step) -> loso.py (folds, UF1/UAR).
What runs it: cli.py (these flags, one per config.py field), table.py (the rows), cache.py (features), runs.py
(run folders), engine.py (CUDA graphs, streams), predict.py, longvideo.py (spot). README.md maps the paper to the code.
"""
import logging
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    import cli
    if argv[:1] == ['predict']:
        a = cli.predict_parser().parse_args(argv[1:])
        quiet, work = a.quiet, lambda: __import__('predict').run(a)
    elif argv[:1] == ['spot']:
        a = cli.parse_spot(argv[1:])
        quiet, work = a.quiet, lambda: __import__('longvideo').run(a)
    else:
        a, cfg = cli.parse_args(argv)
        quiet, work = cfg.quiet, lambda: __import__('table').run(a, cfg)
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format='%(asctime)s %(name)s: %(message)s', datefmt='%H:%M:%S')
    import align
    import data
    import frames
    import weights
    try:
        return work()
    except (data.DatasetError, align.FaceNotFound, frames.FrameError, weights.ModelFileError, FileNotFoundError,
            NotADirectoryError) as e:
        # Problems with the user's data or files: one line that names the file and what to do, no traceback.
        raise SystemExit(f'mer.py: error: {e}') from None


if __name__ == '__main__':
    import checkpoint
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
