"""The notebook API (video/api.py): docs/notebook.md's example runs as written, and what it returns agrees with
the commands on the same frames."""
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / 'docs' / 'notebook.md'


def test_the_notebook_example_runs_and_finds_the_expression(model_file, capsys):
    code = re.search(r'```python\n(.*?)```', DOC.read_text(), re.S).group(1)
    assert "api.load('runs/demo/part_adversarial_emr/model.pt')" in code
    scope = {}
    exec(compile(code.replace('runs/demo/part_adversarial_emr/model.pt', str(model_file)), str(DOC), 'exec'), scope)
    out, found = scope['out'], scope['found']
    assert set(out['probabilities']) == {'negative', 'positive', 'surprise'}
    assert abs(sum(out['probabilities'].values()) - 1) < 1e-5 and out['label'] in out['probabilities']
    assert 4 <= out['apex'] <= 8                       # the pull peaks at frame 66, position 6 of frames[60:73]
    assert out['steps'].x.shape[0] == 3
    # the expression (frames 60-72) is found once, as a micro-expression, and recognised
    assert len(found) == 1 and found[0]['kind'] == 'micro', found
    assert found[0]['onset'] <= 66 <= found[0]['offset'] and 'label' in found[0]
    assert capsys.readouterr().out.count('\n') == 2


def test_the_api_and_the_command_agree(model_file, tmp_path, capsys):
    import json

    import cv2
    import numpy as np

    import mer
    from data import synth
    from video import api
    rng = np.random.default_rng(3)
    face, lm = synth.identity(synth.photos()[1], rng)
    frames = synth.render(face, synth.deformation(lm, synth.POS, face.shape[:2], 5.0), synth.profile(20, 2, 10, 18),
                          rng)
    folder = tmp_path / 'clip'
    folder.mkdir()
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f'img{i:03d}.png'), f)
    assert mer.main(['predict', str(folder), '--model', str(model_file), '--fps', '30', '--json', '-q']) == 0
    cmd = json.loads(capsys.readouterr().out.splitlines()[-1])
    out = api.predict(frames, 30, api.load(model_file))
    assert cmd['apex'] == out['apex'] and cmd['label'] == out['label']
    assert all(abs(cmd[f'p_{c}'] - p) < 1e-6 for c, p in out['probabilities'].items())
