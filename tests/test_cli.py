"""engine/cli.py: a flag for every setting, built from the dataclass, checked at parse time; --plain's limits."""
import dataclasses

import pytest

import config
from engine import cli


def test_every_setting_is_a_flag_and_a_flag_not_given_keeps_the_preset():
    a, cfg = cli.parse_args(['--demo', '--evm-alpha', '2.5', '--no-emr', '--stabilise', '--jobs', '3'])
    assert (cfg.evm_alpha, cfg.emr, cfg.stabilise, cfg.jobs) == (2.5, False, True, 3)
    assert (cfg.size, cfg.epochs) == (config.DEMO.size, config.DEMO.epochs)     # the demo's preset
    _, paper = cli.parse_args(['--data', 'megc'])
    assert dataclasses.asdict(config.PAPER).items() <= dataclasses.asdict(paper).items()
    flags = cli.parser()._option_string_actions
    for f in dataclasses.fields(cli.Run):
        name = f.name.replace('_', '-')
        assert (f'--no-{name}' if f.default is True else f'--{name}') in flags, f.name


def test_a_number_outside_its_range_is_refused_at_parse_time(capsys):
    with pytest.raises(SystemExit):
        cli.parse_args(['--demo', '--epochs', '0'])
    assert '--epochs: 0 is outside [1, inf]' in capsys.readouterr().err
    assert cli.ranged(float, above=0)('0.5') == 0.5


@pytest.mark.parametrize('extra', [['--table'], ['--method', 'lbptop'], ['--save-model'], ['--seeds', '0,1'],
                                   ['--folds', '1/2'], ['--protocol', 'hde']])
def test_the_plain_path_runs_one_row_in_memory_and_says_what_it_cannot_do(extra, capsys):
    assert cli.parse_args(['--demo', '--plain'])[0].plain
    with pytest.raises(SystemExit):
        cli.parse_args(['--demo', '--plain', *extra])
    assert '--plain runs one row of the method in memory' in capsys.readouterr().err
