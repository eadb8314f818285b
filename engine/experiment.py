"""`mer.py` without a sub-command, the experiment: the samples loaded, every row of Table I asked for run (or
resumed, or merged) in its own run folder, the final model saved, the tables printed. The command line (engine/cli.py)
builds the Config and the options; runfolder.py keeps each row's run folder; engine/cache.py the features.
"""
import dataclasses
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import align
import config
import lbptop
import pipeline
from config import PAPER, ROWS
from data import releases, synth
from engine import cache, checkpoint, graphs, logs, runfolder
from engine import weights as weight_files
from results import report, stats
from util import files
from util.workers import processes, usable_cpus

log = logging.getLogger('mer')


def load_samples(a):
    """(micro samples, macro samples) from the command line's sources (--demo builds the demo set once)."""
    if a.demo:
        root = synth.build(a.demo_root, seed=0, preset=a.demo)
        a.data, a.ckplus = str(root / 'megc'), a.ckplus or str(root / 'ck')
    micro = (releases.load_index(a.index, strict=a.strict, skip_bad=a.skip_bad) if a.index else
             releases.load_megc(a.data, strict=a.strict, skip_bad=a.skip_bad))
    macro = releases.load_ckplus(a.ckplus, skip_bad=a.skip_bad) if a.ckplus else []
    return [s for s in micro if s.domain == 'micro'], macro + [s for s in micro if s.domain == 'macro']


def trunk_weights(cfg, path):
    """ImageNet state dict for the trunk (init 'imagenet'), or None (init 'random')."""
    if cfg.init == 'random':
        return None
    try:
        return weight_files.imagenet_weights(path, download=True)
    except (ValueError, OSError) as e:
        raise SystemExit(f'mer.py: error: {e}') from None


def check_writable(folder, flag):
    """Creates `folder` if needed and checks a file can be written there, before any long work."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        raise SystemExit(f'mer.py: error: {folder}: cannot write here ({e.strerror or e}); pass another {flag}') \
            from None


def slug(name):
    """'Part + Adversarial + EMR' -> 'part_adversarial_emr': a row's sub-folder under --table."""
    return '_'.join(w.lower() for w in name.split(' + '))


def row_folder(a, base, name):
    """The run folder of one row: --out itself for a single row given one, else its own sub-folder of base."""
    return base if a.out and not a.table else base / slug(name)


def run_row(a, cfg, micro, macro, weights, out, feats):
    """Runs (or resumes, or merges) the LOSO of one network row of Table I; returns its metrics or None."""
    if cfg.emr not in feats:
        feats[cfg.emr] = cache.features(micro + macro, cfg, a.cache, workers=processes(cfg.workers),
                                        quiet=cfg.quiet, skip_bad=a.skip_bad,
                                        desc='align+EMR+flow' if cfg.emr else 'align+flow')
    x, samples = feats[cfg.emr]
    out.mkdir(parents=True, exist_ok=True)
    runfolder.check_config(out, dict(config.result_settings(cfg), data=a.data, index=a.index, row=cfg.row(),
                                protocol=a.protocol), machine(cfg))
    res = None if a.final_only else runfolder.run(x, samples, cfg, out, weights, a.shard, a.protocol, a.bootstrap)
    if a.save_model and a.shard == (1, 1) and (res is not None or a.final_only):
        save_final(x, samples, cfg, weights, out, provenance(a, samples), calibration_of(out, res))
    return res


def calibration_of(out, res):
    """The temperature scaling fitted on this run's out-of-fold predictions (results/calibration.py), from its
    metrics or, with --final-only, from the metrics.json an earlier LOSO of the same settings left in the run
    folder (its config.json is checked); None where there is none."""
    if res is None and (out / 'metrics.json').is_file():
        res = json.loads((out / 'metrics.json').read_text())
    cal = (res or {}).get('calibration')
    return None if cal is None else {k: v for k, v in cal.items() if not k.startswith('bins_')}


def provenance(a, samples):
    """What a saved model records of its training data: the folders or index it read, whether they are the
    synthetic demo set, samples and subjects per dataset, the protocol, the date (UTC)."""
    sources = [p for p in (a.data, a.index, a.ckplus) if p]
    per = {}
    for s in samples:
        per.setdefault(s.dataset, set()).add(s.subject)
    return dict(source=', '.join(str(Path(p).resolve()) for p in sources),
                synthetic=bool(sources) and all(synth.is_demo(p) for p in sources),
                datasets={ds: dict(samples=sum(s.dataset == ds for s in samples), subjects=len(per[ds]))
                          for ds in sorted(per)},
                protocol=a.protocol, date=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), **machine(a.cfg))


def save_final(x, samples, cfg, weights, out, provenance=None, calibration=None):
    """Trains one model on every sample with the row's settings and writes out/model.pt (kept if already there),
    with the calibration fitted on the LOSO of the same settings where there is one."""
    path = out / 'model.pt'
    if path.is_file():
        log.info('%s is already there (the run folder\'s settings are checked); delete it to train it again', path)
        return
    keep = out / 'folds'              # folds/all.ckpt while it trains, as a fold's
    keep.mkdir(parents=True, exist_ok=True)
    with runfolder.stopped_in(out), checkpoint.deferred():     # a stop signal saves its checkpoint at the next step
        net, _ = runfolder.train_final(x, samples, cfg, weights, keep)
    trained_on = {d: sum(s.dataset == d for s in samples) for d in sorted({s.dataset for s in samples})}
    weight_files.save_model(path, net, config.result_settings(cfg), pipeline.constants(), config.CLASSES,
                            files.code_version(), trained_on, provenance, calibration)
    checkpoint.remove(keep, checkpoint.FINAL)
    if calibration is None:
        log.warning('%s: no LOSO of these settings in %s to calibrate its probabilities on; predict will say they are '
                    'uncalibrated (run the LOSO with --save-model to calibrate them)', path, out)
    log.info('model saved to %s: %d samples (%s)', path, len(samples), ', '.join(f'{k} {v}' for k, v in
                                                                                   trained_on.items()))


def run_lbptop(a, cfg, micro, out):
    """Runs (or resumes, or merges) Table I's first row, the MEGC2019 baseline LBP-TOP + linear SVM (lbptop.py)."""
    x, samples = cache.features(micro, cfg, a.cache, cache.lbptop_input, cache.lbptop_key,
                                workers=processes(cfg.workers), quiet=cfg.quiet, skip_bad=a.skip_bad,
                                desc='align+TIM+LBP-TOP')
    out.mkdir(parents=True, exist_ok=True)
    runfolder.check_config(out, dict(align_size=cfg.align_size, no_face=cfg.no_face, landmarks=cfg.landmarks,
                                **lbptop.SETTINGS, data=a.data, index=a.index, row='LBP-TOP', protocol=a.protocol))
    return runfolder.run_baseline(x, samples, out, lbptop.svm_predict, a.shard, a.protocol, a.bootstrap)


def summaries(a, results):
    """(Table I's lines, the paired comparisons of every row with the first network row, the protocol audit's
    lines) of the finished rows `results` [(name, [metrics and rows of each seed's run])]."""
    lines, audits = [], []
    for name, done in results:
        if len(done) == 1:
            lines.append((name, done[0]['honest']))
        else:
            lines += [(f'{name}, seed {s}', r['honest']) for s, r in zip(a.seed_list, done)]
            lines.append((f'{name}, mean of {len(done)} seeds', report.scored([r['rows'] for r in done],
                                                                               a.bootstrap)))
        audits.append((name, {k: {m: round(float(np.mean([r['audit'][k][m] for r in done])), 4) for m in v}
                              for k, v in done[0]['audit'].items()}))
    full = next(((n, d) for n, d in results if n != 'LBP-TOP'), None)
    paired = []
    for name, done in results:
        if full and name != full[0]:
            try:
                paired.append((f'{full[0]} − {name}', stats.paired([r['rows'] for r in full[1]],
                                                                   [r['rows'] for r in done], a.bootstrap)))
            except ValueError as e:       # --skip-bad left other subjects out of one row than of the other
                log.warning('%s against %s: not compared, %s', full[0], name, e)
    return lines, paired, audits


def machine(cfg):
    """{'precision': what --precision resolves to for this process (bf16 or fp32: 'auto' picks bf16 on a GPU or a
    CPU with fast bf16, and the two give other numbers), 'device': the CPU's or GPU's name}."""
    import platform

    import torch

    import train
    device = graphs.resolve_device(cfg.device)
    if device.type == 'cuda':
        name = torch.cuda.get_device_name(device)
    else:
        try:
            name = next(x.split(':', 1)[1].strip() for x in open('/proc/cpuinfo') if x.startswith('model name'))
        except (OSError, StopIteration):
            name = platform.processor() or platform.machine()
    return dict(precision='bf16' if train.bf16(cfg, device) else 'fp32', device=f'{device.type}: {name}')


def cpus_line(cfg):
    """What the run found of the CPUs it may use, and the processes it starts on them."""
    return (f"{usable_cpus()} of this machine's {os.cpu_count()} CPUs usable by this process (its affinity): "
            f'{processes(cfg.workers)} feature worker processes{" (--workers)" * bool(cfg.workers)}, '
            f'{processes(cfg.jobs)} training processes at most on CPU{" (--jobs)" * bool(cfg.jobs)}')


def log_folder(a, cfg, base, macro):
    """The folder whose run.log the run appends to: the row's run folder (above its seed folders), or under
    --table the folder of the rows."""
    if a.table:
        return base
    return row_folder(a, base, 'LBP-TOP' if a.method == 'lbptop' else
                      dataclasses.replace(cfg, adv=cfg.adv and bool(macro)).row())


def check_locks(*folders):
    """One warning line when file locks do not work in the run folder or the cache (the claims then hold
    nothing): what goes wrong, and what to do."""
    broken = [(str(f), why) for f in dict.fromkeys(map(Path, folders)) if (why := files.lock_problem(f))]
    if broken:
        log.warning('%s: file locks do not work here (%s), so processes sharing %s cannot claim folds and features, '
                    'and each does all the work it is given: move --out and --cache to a file system with working '
                    'locks (a local disk; NFS with its lock service; Lustre mounted with -o flock), or start one '
                    'process per --folds shard and at most one on each (docs/slurm.md)',
                    ' and '.join(f for f, _ in broken), broken[0][1], 'them' if len(broken) > 1 else 'it')


def run(a, cfg):
    """Every stage for the rows asked for; prints Table I, the paired comparisons and the protocol audit; returns
    the exit status. Every log line and printed line also goes to the run's own log, run.log in its folder."""
    a.cfg = cfg                 # its precision and device named in config.json, model.pt and the printed table
    runlog, root = logs.RunLog(), logging.getLogger()
    level = root.level
    root.addHandler(runlog)
    root.setLevel(min(level, logging.INFO) if level else level)       # -q hides info lines from the terminal only
    try:
        return _run(a, cfg, runlog)
    finally:
        root.removeHandler(runlog)
        root.setLevel(level)


def say(runlog, text):
    """Prints a result line, and keeps it in the run log."""
    print(text)
    runlog.write(text)


def _run(a, cfg, runlog):
    """run's stages, its log lines and printed lines also kept in `runlog`."""
    t0 = time.time()
    log.info('%s', cpus_line(cfg))
    if a.demo:
        changed = [k for k, v in dataclasses.asdict(config.DEMO).items() if getattr(PAPER, k) != v]
        log.info('%s demo set, demo preset instead of the paper\'s settings: %s (paper: %s)', a.demo,
                 ', '.join(f'{k} {getattr(cfg, k)}' for k in changed),
                 ', '.join(f'{k} {getattr(PAPER, k)}' for k in changed))
    micro, macro = load_samples(a)
    log.info('%d micro samples (%s), %d macro samples, %d subjects', len(micro),
             ', '.join(f'{d} {sum(s.dataset == d for s in micro)}' for d in config.DATASETS), len(macro),
             len({(s.dataset, s.subject) for s in micro}))
    held = sorted({s.dataset for s in micro})
    if a.protocol == 'hde' and len(held) < 2:
        raise SystemExit(f'mer.py: error: --protocol hde holds out one dataset and trains on the others, but the '
                         f'micro samples come from {len(held)} ({", ".join(held) or "none"}); use --protocol loso')
    if a.figure:
        report.figure(micro, cfg, a.figure)
    baseline = (a.table or a.method == 'lbptop') and not a.final_only
    rows = ROWS if a.table else [] if a.method == 'lbptop' else [(cfg.parts, cfg.adv, cfg.emr)]
    # Each row gets its own folder, so runs with other flags never collide (a resume checks the settings).
    stem = {'quick': 'demo', 'hard': 'demo_hard'}.get(a.demo) or Path(a.data or a.index).stem
    base = Path(a.out or f"runs/{stem}{'_hde' * (a.protocol == 'hde')}")
    check_writable(base, '--out')
    check_writable(a.cache, '--cache')
    check_locks(base, a.cache)
    if rows:          # a CUDA device that is not there is said now, not once the features are made
        graphs.resolve_device(cfg.device)
    runlog.start(log_folder(a, cfg, base, macro), a.argv)
    if cfg.landmarks:             # checked once here, not once per sample in the feature stage
        align.landmark_model_path(cfg.landmarks)
    results, unfinished, out = run_rows(a, cfg, micro, macro, base, baseline, rows)
    if a.final_only:
        say(runlog, '\n'.join(str(out / 'model.pt') for out in unfinished))
        return 0
    if unfinished:
        if a.shard != (1, 1):
            say(runlog, f'shard {a.folds} done in {", ".join(map(str, unfinished))}; run again without --folds (or '
                        'with the other shards) to merge')
        else:
            say(runlog, f'{", ".join(map(str, unfinished))}: folds that another process is training are still '
                        'missing; run the same command again once it has finished, to merge')
        return 0
    where = base if a.table else out.parent if a.seed_list else out
    say(runlog, write_tables(a, results, where))
    say(runlog, f'{where}: fold predictions, megc_log.txt, metrics.json, train_log.csv, curves.png, confusion '
                f'matrices; {time.time() - t0:.0f} s')
    return 0


def run_rows(a, cfg, micro, macro, base, baseline, rows):
    """([(row name, [each seed's metrics and rows])] of the finished rows, the run folders not finished yet, the
    last run folder): the LBP-TOP baseline if asked, then each network row (parts, adv, emr) under each seed."""
    weights = None if a.method == 'lbptop' else trunk_weights(cfg, a.weights)
    feats, results, unfinished = {}, [], []
    out = base
    if baseline:
        out = row_folder(a, base, 'LBP-TOP')
        res = run_lbptop(a, cfg, micro, out)
        if res is None:
            unfinished.append(out)
        else:
            results.append(('LBP-TOP', [res]))
    for parts, adv, emr in rows:
        row = dataclasses.replace(cfg, parts=parts, adv=adv and bool(macro), emr=emr)
        done = []
        for seed in a.seed_list or [row.seed]:
            out = row_folder(a, base, row.row()) / (f'seed{seed}' if a.seed_list else '')
            res = run_row(a, dataclasses.replace(row, seed=seed), micro, macro, weights, out, feats)
            if res is None:
                unfinished.append(out)
            else:
                done.append(res)
                m = res['honest']['all']
                log.info('%s%s: UF1 %s, UAR %s', row.row(), f', seed {seed}' * bool(a.seed_list),
                         report.cell(m, 'uf1'), report.cell(m, 'uar'))
        if done and len(done) == len(a.seed_list or [row.seed]):
            results.append((row.row(), done))
    return results, unfinished, out


def write_tables(a, results, where):
    """The text of Table I, the paired comparisons and the protocol audit of the finished rows, also written to
    where/table.md (and the comparisons to where/paired.json)."""
    lines, paired, audits = summaries(a, results)
    title = ('Held-out databases (MEGC2018 HDE: each dataset tested by a model trained on the others; "UF1", '
             '"UAR" pool the three test sets)' if a.protocol == 'hde' else 'Table I (LOSO over the composite)')
    m = machine(a.cfg)
    text = (f'{title}; 95 % intervals over subjects ({a.bootstrap} bootstrap draws, subjects resampled within '
            f'each dataset); trained in {m["precision"]} on {m["device"]} (--precision {a.cfg.precision}):\n\n'
            f'{report.table(lines)}\n')
    if paired:
        text += ('\nPaired comparisons (the same resampled subjects for both rows; "first ahead": the share of '
                 f'draws in which the first row scores higher):\n\n{report.paired_table(paired)}\n')
    text += ('\nProtocol audit (the same predictions under the evaluations of published code; README: "What the '
             f'numbers mean"):\n\n{report.audit_table(audits)}\n')
    files.atomic_write(where / 'table.md', text)
    if paired:
        files.atomic_write(where / 'paired.json', json.dumps(dict(paired), indent=1))
    return text
