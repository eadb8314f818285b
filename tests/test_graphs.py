"""engine/graphs.py on this CPU: the engine's loop makes the method's calls (train.fold_step, train.evaluate) in
train.train's order, for every fold of a wave, and counts each step once. The CUDA-graph path itself is tested
where a GPU is (tests/test_train.py and tests/test_checkpoint.py, `-k cuda`).

This file imports neither cv2, dlib, openpyxl nor scikit-learn."""
import dataclasses

import pytest
import torch
from toy import learnable

import config
import loso
import train
from engine import cli, graphs

CPU = torch.device('cpu')
TOY = cli.run_config(config.PAPER, size=36, epochs=2, batch_size=4, init='random', precision='fp32', device='cpu',
                     quiet=True, jobs=1)


def _folds(n=2, cfg=TOY):
    x, meta = learnable(n_subjects=2, per=3, macro=3, size=cfg.size)
    data = train.fold_data(x, meta, CPU)
    return [train.new_fold(k, tr, te, cfg, len(meta), CPU) for k, tr, te in loso.plan_folds(meta)[:n]], data


def _calls(monkeypatch):
    """The method's calls the loop makes, in order, recorded as (what, fold, step counter or epoch)."""
    seen = []
    step, evaluate = train.fold_step, train.evaluate
    monkeypatch.setattr(train, 'fold_step', lambda f, d, c: seen.append(('step', f.key, int(f.t))) or step(f, d, c))
    monkeypatch.setattr(train, 'evaluate',
                        lambda f, d, c, e: seen.append(('evaluate', f.key, e)) or evaluate(f, d, c, e))
    return seen


def test_the_engine_makes_the_method_calls_in_the_method_order(monkeypatch):
    seen = _calls(monkeypatch)
    (a, b), data = _folds()
    train.train(a, data, TOY)
    alone = list(seen)
    seen.clear()
    (a, b), data = _folds()
    graphs.train_wave([a, b], data, TOY)
    steps = a.batches.shape[0] // TOY.epochs
    # Fold a's calls, among the wave's, are train.train's own; the wave takes step t of every fold before step t + 1.
    assert [c for c in seen if c[1] == a.key] == alone
    assert [c for c in seen if c[1] == b.key] == [(w, b.key, n) for w, _, n in alone]
    expected = []
    for e in range(TOY.epochs):
        expected += [('step', f.key, t) for t in range(e * steps, (e + 1) * steps) for f in (a, b)]
        expected += [('evaluate', f.key, e) for f in (a, b)]
    assert seen == expected


def test_a_fold_trained_in_a_wave_ends_as_the_method_alone_trains_it():
    (a, _), data = _folds()
    train.train(a, data, TOY)
    (a2, b2), data = _folds()
    graphs.train_wave([a2, b2], data, TOY)
    for name in ('t', 'sums', 'preds', 'logits'):
        assert torch.equal(getattr(a, name), getattr(a2, name)), name
    assert all(torch.equal(v, a2.net.state_dict()[k]) for k, v in a.net.state_dict().items())


def test_each_step_of_a_wave_is_counted_once_and_a_fold_without_test_subject_is_not_evaluated(monkeypatch):
    class Count:
        n = 0

        def update(self, k):
            self.n += k
    seen = _calls(monkeypatch)
    (a, b), data = _folds()
    final = train.new_fold('all', list(range(len(data[1]))), [], TOY, len(data[1]), CPU)
    bar = Count()
    graphs.train_wave([a, b, final], data, TOY, progress=bar)
    assert bar.n == 3 * a.batches.shape[0]
    assert not [c for c in seen if c[0] == 'evaluate' and c[1] == 'all']


def test_a_cuda_device_that_is_not_there_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert graphs.resolve_device('auto') == CPU
    with pytest.raises(SystemExit, match='--device cuda:1: no CUDA device.*use --device cpu'):
        graphs.resolve_device('cuda:1')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    assert graphs.resolve_device('cuda:1') == torch.device('cuda:1') and graphs.resolve_device('cuda').index is None
    with pytest.raises(SystemExit, match=r'--device cuda:2: torch sees 2 CUDA devices \(cuda:0-1\)'):
        graphs.resolve_device('cuda:2')


def test_a_device_that_is_not_auto_cpu_or_cuda_is_refused_by_the_parser(capsys):
    from engine import cli
    for name in ('gpu', 'cuda:x', 'cuda:-1', 'mps', 'CPU'):
        with pytest.raises(SystemExit):
            cli.parse_args(['--demo', '--device', name])
        assert f"'{name}' is not auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    for name in ('auto', 'cpu', 'cuda', 'cuda:3'):
        assert cli.parse_args(['--demo', '--device', name])[1].device == name


def test_train_folds_skips_the_folds_another_process_claimed():
    x, meta = learnable(n_subjects=2, per=3, macro=3, size=36)
    specs = loso.plan_folds(meta)
    got = list(graphs.train_folds(specs, train.fold_data(x, meta, CPU), len(meta), dataclasses.replace(TOY, epochs=1),
                                  CPU, claim=lambda key: key != specs[0][0]))
    assert [r[0] for r in got] == [k for k, _, _ in specs[1:]]
    assert all(len(r) == 5 for r in got)        # key, honest, selected, log, logits
