"""`mer.py predict` and `mer.py spot` for frames held in memory (a notebook, a program of your own): the same
functions the commands call, on a (T, H, W, 3) BGR uint8 array (or a list of frames) and its frame rate.
docs/notebook.md shows them; the suite runs its example.

    from video import api
    model = api.load('runs/megc/part_adversarial_emr/model.pt')
    out = api.predict(frames, fps=30, model=model)         # out['probabilities'], out['steps'].flow, ...
    found = api.spot(frames, fps=30)                         # [{'onset', 'apex', 'offset', 'kind', ...}]
    found = api.spot(frames, fps=30, model=model)            # each recognised too
"""
import config
import pipeline
from video import intervals, longvideo, predict as _predict


def load(path, stabilise=True):
    """A saved model (model.pt): {'net', 'cfg' (the settings it was trained with, head motion removed unless
    stabilise=False), 'record' (what the file says: provenance, settings, code version), 'temperature' (its
    calibration; 1 where it has none)}; it logs its provenance and, for a model of the synthetic demo set, a
    warning."""
    return _predict.load(path, stabilise=stabilise, quiet=True)


def steps(frames, fps, cfg=config.PAPER, onset=0, apex=None, domain='micro', max_frames=1000):
    """Every step of the per-sample pipeline on a clip in memory: a pipeline.Steps (the Sample with its apex
    spotted where none is given, the transform, the aligned frames, the onset and apex faces, the frame the flow
    goes to (EMR), the flow, the network's input x). onset/apex: positions in `frames`."""
    clip = _predict.memory_clip(frames, fps)
    return pipeline.from_frames(*_predict.prepare(clip, cfg, onset=onset, apex=apex, no_face='error',
                                                  max_frames=max_frames, domain=domain), cfg)


def predict(frames, fps, model, onset=0, apex=None, domain='micro', max_frames=1000):
    """{'label', 'probabilities' ({class: p}), 'onset', 'apex' (positions), 'steps'} of a clip in memory that starts
    at (or contains, from `onset`) an expression."""
    st = steps(frames, fps, model['cfg'], onset, apex, domain, max_frames)
    p = _predict.probabilities(model['net'], st.x, model['temperature'])
    probs = dict(zip(config.CLASSES, map(float, p)))
    return dict(label=max(probs, key=probs.get), probabilities=probs, onset=onset + st.sample.onset,
                apex=onset + st.sample.apex, steps=st)


def motion(frames, fps, settings=None):
    """The spotter's motion curves of frames in memory (intervals.motion's dict: positions, segments, p, q, ...)."""
    return intervals.motion(iter(frames), fps, 'frames', settings)


def spot(frames, fps, model=None, settings=None):
    """The expression intervals in frames held in memory, as `mer.py spot` finds them: dicts with 'onset', 'apex',
    'offset' (positions, inclusive), their seconds, 'kind' (micro | macro), 'score', and with a model 'label' and
    'p_<class>'. settings: the spotter's (intervals.SPOTTING keys, e.g. {'k': 6.0})."""
    video = longvideo.memory_video(frames, fps)
    found, _, _ = longvideo.spot_video(video, settings, quiet=True, model=model, buffer_s=len(frames) / fps + 1)
    out = []
    for r in found:
        rec = longvideo.record(video, r)
        out.append({k: v for k, v in rec.items() if k not in ('video', 'path', 'delay_s')})
    return out
