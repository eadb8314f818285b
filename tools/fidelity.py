"""EMR fidelity: does magnification make a micro-expression's motion larger while keeping where it is and which way
it goes? Measured against the known motion of the demo set (data/synth.py writes each clip's truth).

    python -m tools.fidelity                       # the demo set with the demo preset (faces aligned at 128 px)
    python -m tools.fidelity --align-size 224      # the paper's size; every Config field is a flag, as in mer.py
    python -m tools.fidelity --demo hard --emr-bands all    # the hard demo set, every band magnified (docs/emr.md)

For every micro clip, the pipeline's own steps (pipeline.run: alignment, EMR, flow) give the
onset->apex flow without EMR (raw) and with it (EMR). The true displacement (synth.displacement) is carried into the
aligned face by the same similarity transform. Per clip, inside the region that moves (true expression motion
>= a quarter of its largest value):
    gain    least-squares scale of the flow onto the truth, sum(f.d) / sum(|d|^2): how much larger the motion is
    cosine  sum(f.d) / (|f| |d|) over the region's vectors: whether it points where, and the way, the face moved
and outside it (no expression motion at all), `outside`, the mean flow magnitude. Per dataset the medians, with
the spread of the gain across clips (10th-90th percentile), and the targets:
    cosine >= 0.9;  gain within +-25 % of the intended factor (1 + alpha) times the raw flow's own gain;
    outside(EMR) <= outside(raw) x intended factor x 1.2.
"""
import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

if not __package__:       # run as a file (python tools/fidelity.py), the project's modules are not on the path
    sys.exit('run it as a module from the repository root: .venv/bin/python -m tools.fidelity (or install the package: '
             'pip install -e .)')

import numpy as np

import config
from util.workers import processes

log = logging.getLogger(__name__)
REGION = 0.25      # the moving region: expression motion >= REGION x its largest value in the clip
STILL = 1e-3       # outside: expression motion below this (px); the field has finite support, so exactly zero


def aligned_truth(truth, frame_shape, m, size, start, end, drift=True):
    """(size, size, 2) float32 true motion from frame index start to end, in the aligned face's pixels: the frame's
    displacement field sampled through the similarity m (2x3, frame -> aligned) and its vectors turned by it."""
    import cv2

    from data import synth
    t = truth if drift else dict(truth, drift=[0.0, 0.0])
    d = synth.displacement(t, frame_shape, start, end)
    warped = cv2.warpAffine(d, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return (warped @ np.asarray(m, np.float32)[:, :2].T).astype(np.float32)


def agreement(f, d, region):
    """(gain, cosine) of flow f against truth d over the boolean region: sum(f.d)/sum(|d|^2), sum(f.d)/(|f||d|)."""
    fr, dr = f[region].astype(np.float64), d[region].astype(np.float64)
    dot, dd, ff = (fr * dr).sum(), (dr * dr).sum(), (fr * fr).sum()
    return dot / max(dd, 1e-12), dot / max(np.sqrt(dd * ff), 1e-12)


def clip_fidelity(job):
    """{dataset, clip, gain/cosine/outside for raw and EMR}: one micro sample measured against its truth."""
    import cv2

    import flow
    import pipeline
    from data.frames import read_frames
    s, truth, cfg = job
    st = pipeline.run(s, cfg, read_frames)              # the onset and apex aligned by one transform
    shape = read_frames([s.frames[s.onset]])[0].shape[:2]
    d = aligned_truth(truth, shape, st.transform, cfg.align_size, s.onset, s.apex)
    expr = aligned_truth(truth, shape, st.transform, cfg.align_size, s.onset, s.apex, drift=False)
    expr = np.linalg.norm(expr, axis=2)
    region, still = expr >= REGION * expr.max(), expr < STILL
    onset, apex = (cv2.cvtColor(x, cv2.COLOR_BGR2GRAY) for x in (st.onset, st.apex))
    out = dict(dataset=s.dataset, clip=s.clip, frames=s.apex - s.onset, motion=float(expr.max()))
    for name, f in (('raw', flow.optical_flow(onset, apex, method=cfg.flow)), ('emr', st.flow)):
        out[f'gain_{name}'], out[f'cosine_{name}'] = agreement(f, d, region)
        out[f'outside_{name}'] = float(np.linalg.norm(f[still], axis=1).mean())
    return out


def measure(samples, truths, cfg, workers=1, quiet=False):
    """Per-clip fidelity dicts of the micro samples that have a truth record."""
    from util.workers import imap
    jobs = [(s, truths[f'{s.dataset}/{s.subject}/{s.clip}'], cfg) for s in samples if s.domain == 'micro']
    return imap(clip_fidelity, jobs, workers, quiet=quiet)


def summary(rows, intended):
    """{dataset: medians, the gain's 10th-90th percentiles, and whether each target holds}, plus 'all'."""
    out = {}
    for ds in sorted({r['dataset'] for r in rows}) + ['all']:
        sel = [r for r in rows if ds in ('all', r['dataset'])]
        col = {k: np.array([r[k] for r in sel]) for k in sel[0] if k not in ('dataset', 'clip')}
        med = {k: float(np.median(v)) for k, v in col.items() if k != 'frames'}
        rel = col['gain_emr'] / (col['gain_raw'] * intended)        # 1.0 = exactly the intended factor
        out[ds] = dict(clips=len(sel), frames=f'{col["frames"].min()}-{col["frames"].max()}', **med,
                       gain_p10=float(np.percentile(col['gain_emr'], 10)),
                       gain_p90=float(np.percentile(col['gain_emr'], 90)), relative_gain=float(np.median(rel)),
                       within_25=float(np.mean(np.abs(rel - 1) <= 0.25)),
                       outside_ratio=float(np.median(col['outside_emr'] / (col['outside_raw'] * intended))))
        out[ds]['targets_met'] = bool(out[ds]['cosine_emr'] >= 0.9 and abs(out[ds]['relative_gain'] - 1) <= 0.25
                                      and out[ds]['outside_ratio'] <= 1.2)
    return out


def table(summ, intended):
    """Markdown table of the summary."""
    lines = [f'| dataset | clips | onset→apex frames | raw gain | EMR gain (p10–p90) '
             f'| EMR gain / ({intended:g} × raw) | share within ±25 % | cosine raw | cosine EMR '
             '| outside EMR / (raw × factor) | targets |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for ds, r in summ.items():
        lines.append(f'| {ds} | {r["clips"]} | {r["frames"]} | {r["gain_raw"]:.2f} | {r["gain_emr"]:.2f} '
                     f'({r["gain_p10"]:.2f}–{r["gain_p90"]:.2f}) | {r["relative_gain"]:.2f} | {r["within_25"]:.0%} '
                     f'| {r["cosine_raw"]:.2f} | {r["cosine_emr"]:.2f} | {r["outside_ratio"]:.2f} '
                     f'| {"met" if r["targets_met"] else "not met"} |')
    return '\n'.join(lines)


def main(argv=None):
    """Prints the per-dataset table for the Config that the flags build on the demo preset."""
    from data import releases, synth
    from engine import cli
    p = argparse.ArgumentParser(prog='python -m tools.fidelity', description=__doc__.split('\n')[0])
    p.add_argument('--json', help='also write the per-clip numbers and the summary to this file')
    p.add_argument('--demo', choices=('quick', 'hard'), default='quick', help="the demo set's preset (mer.py --demo)")
    p.add_argument('--demo-root', help='where the demo set is (built once if absent; default demo_data, or '
                   'demo_hard for --demo hard)')
    cli.add_config_flags(p)
    a = p.parse_args(argv)
    a.demo_root = a.demo_root or ('demo_hard' if a.demo == 'hard' else 'demo_data')
    cfg = dataclasses.replace(cli.config(a, config.DEMO), emr=True)
    logging.basicConfig(level=logging.WARNING if cfg.quiet else logging.INFO, format='%(message)s')
    root = synth.build(a.demo_root, seed=0, preset=a.demo)
    truths = json.loads((root / 'truth.json').read_text())
    micro = releases.load_megc(root / 'megc')
    t0 = time.time()
    rows = measure(micro, truths, cfg, workers=processes(cfg.workers), quiet=cfg.quiet)
    intended = 1 + cfg.evm_alpha
    summ = summary(rows, intended)
    print(f'EMR fidelity, {len(rows)} micro clips of the {a.demo} demo set, align {cfg.align_size} px, flow '
          f'{cfg.flow}, EVM {cfg.evm()}, bands {cfg.emr_bands}, {time.time() - t0:.0f} s')
    print(table(summ, intended))
    if a.json:
        Path(a.json).write_text(json.dumps(dict(config=cfg.evm(), bands=cfg.emr_bands, demo=a.demo, align_size=cfg.align_size, clips=rows,
                                                summary=summ), indent=1))


if __name__ == '__main__':
    sys.exit(main())
