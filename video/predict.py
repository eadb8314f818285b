"""`mer.py predict`: a saved model (model.pt) applied to your own clips, videos or folders of numbered frames.

A clip goes through the same per-sample pipeline as training (pipeline.py): the face aligned on the onset frame
(with the rigid head motion of every later frame removed, stabilise.py), the apex spotted where none is given
(pipeline.find_apex), EMR, onset->apex flow, u, v, strain; then the saved PartNet gives the three class probabilities.
Frames are read one at a time and only the aligned face is kept, so a long video is never held whole.
"""
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

import align
import config
import pipeline
from config import Sample
from data.frames import FrameError, read_frames, same_size
from data.releases import DatasetError, frame_number, list_frames
from util.files import atomic_write
from video import intervals

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- reading clips
# A clip is a dict: 'path', 'fps', 'numbers' (frame numbers of the positions known so far), 'frames' (the frames
# read, None where not yet read or not kept), 'read' (position -> frame, for a folder; None otherwise), 'stream'
# (a video's frames still to come; None once it has ended or for frames in memory). A video file is read once,
# from its start, as far as the work needs and no further; what is read from `keep_from` on is kept, so no frame
# is decoded twice.
HINT = 'give a video file (mp4, avi, mov) or a folder of numbered frames'


def no_frames(path):
    """The one-line error of a file OpenCV reads no frame from."""
    return DatasetError(f'{path}: OpenCV reads no frames from this file (empty, not a video, or a codec it lacks); '
                        're-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4) or give another file')


def open_clip(path, fps=None, keep_from=0):
    """The clip of a user's video file or folder of numbered frames (frames before position `keep_from` are read
    past, not kept); a path that is missing, holds no numbered frames, or fewer than 2 frames OpenCV can read is a
    DatasetError naming it and what to do."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f'{p}: no such file or folder; {HINT}')
    if p.is_dir():
        try:
            files = list_frames(p)
        except DatasetError:
            raise DatasetError(f'{p}: no numbered image frames in this folder (names ending in the frame number, '
                               f'e.g. img046.jpg); {HINT}') from None
        if fps is None:
            log.info('%s: a folder of frames gives no frame rate; taking %g fps (pass --fps to change it)', p,
                     config.DEFAULT_FPS)
        clip = dict(path=str(p), fps=fps or config.DEFAULT_FPS, numbers=[frame_number(f) for f in files],
                    frames=[None] * len(files), read=lambda i: read_frames([files[i]])[0], stream=None, files=files)
    else:
        cap = cv2.VideoCapture(str(p))
        if not cap.isOpened():
            raise no_frames(p)
        rate = cap.get(cv2.CAP_PROP_FPS)
        rate = rate if rate and rate > 0 and np.isfinite(rate) else 0.0
        clip = dict(path=str(p), fps=fps or rate or 30.0, numbers=[], frames=[], read=None,
                    stream=video_frames(cap, str(p), keep_from), files=None)
    if available(clip, 2) < 2:
        raise DatasetError(f'{p}: 1 frame; a clip needs at least 2 (an onset and a later frame)') \
            if clip['numbers'] else no_frames(p)
    return clip


def memory_clip(frames, fps, name='frames'):
    """The clip of frames held in memory (a (T, H, W, 3) BGR array or a list of frames), numbered from 0."""
    frames = list(same_size(frames, name))
    if len(frames) < 2:
        raise DatasetError(f'{name}: {len(frames)} frame; a clip needs at least 2 (an onset and a later frame)')
    return dict(path=name, fps=float(fps), numbers=list(range(len(frames))), frames=frames, read=None, stream=None,
                files=None)


def video_frames(cap, name, keep_from=0):
    """Yields a capture's frames in order (None before position keep_from: grabbed, not kept), released at the end."""
    try:
        i = 0
        while True:
            ok, img = (cap.grab(), None) if i < keep_from else cap.read()
            if not ok:
                return
            yield img
            i += 1
    finally:
        cap.release()


def available(clip, stop):
    """How many of the first `stop` positions the clip has (None: all), reading a video on as far as that needs."""
    while clip['stream'] is not None and (stop is None or len(clip['frames']) < stop):
        img = next(clip['stream'], False)
        if img is False:
            clip['stream'] = None
            break
        clip['frames'].append(img)
        clip['numbers'].append(len(clip['numbers']))
    return len(clip['numbers']) if stop is None else min(stop, len(clip['numbers']))


def clip_frames(clip, start=0, stop=None):
    """Yields the BGR frames of positions start..stop-1 of a clip, one at a time, each read once and kept (frames
    of a clip must have one size)."""
    stop = available(clip, stop)
    first = next((f.shape[:2] for f in clip['frames'] if f is not None), None)
    for i in range(start, stop):
        if clip['frames'][i] is None:
            if clip['read'] is None:
                raise DatasetError(f'{clip["path"]}: frame {clip["numbers"][i]} was read past (before the onset); '
                                   'give an --onset no later than it')
            clip['frames'][i] = clip['read'](i)
        f = clip['frames'][i]
        first = first or f.shape[:2]
        if f.shape[:2] != first:
            raise FrameError(f'{clip["path"]}: the clip\'s frames differ in size ({first[1]}x{first[0]}, '
                             f'{f.shape[1]}x{f.shape[0]} at frame {clip["numbers"][i]}); one transform per clip '
                             'needs frames of one size: check the clip\'s folder')
        yield f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)


def position(clip, number, flag):
    """Position in the clip of a frame number (a video's frames are numbered from 0); DatasetError if absent."""
    nums = clip['numbers']
    if clip['files'] is None:
        available(clip, number + 1)         # a video's frames are numbered by position
    if number in nums:
        return nums.index(number)
    available(clip, None)
    raise DatasetError(f'{clip["path"]}: {flag} {number} is beyond the clip\'s frames ({nums[0]} to {nums[-1]}); '
                       f'give a frame number in that range')


def upsampling(img):
    """dlib's upsampling for a frame: none where the frame is large enough for a face to be 80 px (4x cheaper)."""
    return 1 if min(img.shape[:2]) < 400 else 0


def has_face(img):
    """Whether dlib finds a face in the frame: at the frame's size first, upsampled only if none is found."""
    up = upsampling(img)
    return bool(align.detect_faces(img, up) or (up == 0 and align.detect_faces(img, 1)))


def first_face(clip, start):
    """Position of the first frame from `start` in which dlib finds a face, or None."""
    for i, img in enumerate(clip_frames(clip, start), start):
        if has_face(img):
            return i
    return None


# ----------------------------------------------------------------------------------------------- one clip
def choose_onset(clip, onset, no_face):
    """Position of the onset: the given frame number or the first frame; with no_face 'skip' the first frame with
    a face from there; with 'error' a frame without one is a DatasetError naming it."""
    i = 0 if onset is None else position(clip, onset, '--onset')
    if has_face(next(clip_frames(clip, i, i + 1))):
        return i
    number = clip['numbers'][i]
    if no_face != 'skip':
        raise DatasetError(f'{clip["path"]}: no face found by the dlib detector in frame {number} (the onset); '
                           'check the clip shows a frontal face there, give --onset N, or pass --no-face skip to '
                           'start at the first frame with a face')
    j = first_face(clip, i + 1)
    if j is None:
        raise DatasetError(f'{clip["path"]}: no face found by the dlib detector in any frame from {number}; check '
                           'the clip shows a frontal face')
    log.warning('%s: no face in frame %d; starting at frame %d, the first with a face (--no-face skip)',
                clip['path'], number, clip['numbers'][j])
    clip['frames'][:j] = [None] * j         # read past: never needed again
    return j


def prepare(clip, cfg, onset=None, apex=None, no_face='error', max_frames=1000, domain='micro'):
    """(the aligned frames the method needs (pipeline.needed), the onset's similarity, the Sample from the onset
    (position 0) to its apex, as given or spotted): the per-sample pipeline's first stages on a clip of your own."""
    i = choose_onset(clip, onset, no_face)
    name = f'{clip["path"]} frame {clip["numbers"][i]}'
    j = None if apex is None else position(clip, apex, '--apex')
    if j is not None and j <= i:
        raise DatasetError(f'{clip["path"]}: the apex (frame {clip["numbers"][j]}) must come after the onset (frame '
                           f'{clip["numbers"][i]}); give --onset before --apex')
    if j is not None:
        stop = j + 1                 # the apex is known: nothing after it is needed
        if stop - i > max_frames:
            raise DatasetError(f'{clip["path"]}: {stop - i} frames from onset to apex, more than --max-frames '
                               f'{max_frames}; raise it or give a later --onset')
    else:
        stop = available(clip, i + max_frames)
        more = available(clip, stop + 1) > stop
        if stop - i < 2:
            limit = f'--max-frames {max_frames}' if more else "the clip's last frame"
            raise DatasetError(f'{clip["path"]}: 1 frame from the onset (frame {clip["numbers"][i]}) to {limit}, and '
                               'the apex is spotted among the frames after the onset; give an earlier --onset, a '
                               'larger --max-frames, or --apex')
    if j is None and more:
        log.warning('%s: only frames %d to %d (--max-frames %d) are searched for the apex', clip['path'],
                    clip['numbers'][i], clip['numbers'][stop - 1], max_frames)
    if j is None:
        # The apex is looked for only while the onset's face is on screen: after it has left (a cut, another
        # scene, a cartoon), the onset's transform warps something else and its change would win.
        span = intervals.face_span(clip_frames(clip, i, stop), clip['fps'])
        if span < 2:
            raise DatasetError(f'{clip["path"]}: the face of the onset (frame {clip["numbers"][i]}) is gone by the '
                               'next frame checked; give an --onset where the face stays, or --apex')
        if i + span < stop:
            log.warning('%s: the face is gone after frame %d; the apex is looked for in frames %d to %d',
                        clip['path'], clip['numbers'][i + span - 1], clip['numbers'][i], clip['numbers'][i + span - 1])
            stop = i + span
        j = i + spot_apex(clip_frames(clip, i, stop), clip['fps'], cfg, name)
    s = Sample('clip', '', Path(clip['path']).name, tuple(clip['numbers'][i:j + 1]), 0, j - i, -1, float(clip['fps']),
               domain)
    # From here on as in training with an annotated apex (pipeline.run): only the frames EMR needs are aligned.
    idx, _ = pipeline.needed(s, cfg)
    aligned, m = pipeline.align_frames((next(clip_frames(clip, i + k, i + k + 1)) for k in idx), cfg, name)
    return aligned, m, s


def spot_apex(frames, fps, cfg, name='clip', size=intervals.SPOTTING['size']):
    """Position of the apex (from the onset, the first frame) as pipeline.find_apex defines it, on the face aligned by
    the onset's landmarks at `size` pixels, each frame's head motion removed under cfg.stabilise (one Farneback
    refinement a frame, warm-started from the last, as the long-video spotter follows a face): the whole clip's
    alignment at the method's size would cost a hundred flows where this costs a few milliseconds a frame."""
    import stabilise
    faces, m, w, mask = [], None, np.eye(2, 3), stabilise.stable_mask(size)
    for img in frames:
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if m is None:
            try:
                m = align.face_transform(img, size, upsampling(img), name, 'error', cfg.landmarks or None)
            except align.FaceNotFound:      # a face too small to find without upsampling
                m = align.face_transform(img, size, 1, name, 'error', cfg.landmarks or None)
            faces.append(intervals.small_face(gray, m, size))
            continue
        face = intervals.small_face(gray, m, size)
        if cfg.stabilise:
            w = stabilise.head_motion(faces[0], face, mask, w, iterations=1)
            face = intervals.small_face(gray, stabilise.compose(cv2.invertAffineTransform(w), m), size)
        faces.append(face)
    return pipeline.find_apex(faces, fps)


def probabilities(net, x, temperature=1.0):
    """(3,) float class probabilities of one network input: the softmax of the joint classifier's logits (§III.B),
    divided first by the model's temperature (results/calibration.py; 1: uncalibrated)."""
    import torch
    with torch.no_grad():
        out = net(torch.as_tensor(x)[None].contiguous(), 0.0)['joint']
    return torch.softmax(out.float() / temperature, -1)[0].numpy().astype(np.float64)


def predict_clip(clip, model, classes, **kw):
    """A dict of the clip's prediction: path, label, probability per class, onset and apex frame numbers, and
    the pictures of --figure (onset, apex, the apex the flow sees, the flow)."""
    import flow
    cfg = model['cfg']
    st = pipeline.from_frames(*prepare(clip, cfg, **kw), cfg)
    p = probabilities(model['net'], st.x, model['temperature'])
    return dict(path=clip['path'], label=classes[int(np.argmax(p))], **{f'p_{c}': float(v) for c, v in
                zip(classes, p)}, onset=st.sample.frames[0], apex=st.sample.frames[st.sample.apex],
                tiles=np.hstack([st.onset, st.apex, st.flow_to, flow.to_image(st.flow)]))


def line(r, classes):
    """'path label p_negative p_positive p_surprise onset apex': the text output of one clip."""
    return ' '.join([r['path'], r['label'], *(f'{r[f"p_{c}"]:.4f}' for c in classes), str(r['onset']),
                     str(r['apex'])])


PANELS = ('onset', 'apex', 'apex the flow sees (EMR)', 'flow: onset to it')


def caption(text, width, height=24):
    """A white strip `width` pixels wide with `text` in black, left-aligned."""
    strip = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (4, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def figure(results, min_tile=160):
    """The picture of --figure: a title over each of the four panels, then per clip a line naming it, its label
    and apex, and its onset | apex | the apex the flow sees (EMR: magnified for a micro-expression, the onset-apex
    middle for a macro one) | the flow; tiles enlarged to at least min_tile pixels so the titles fit."""
    side = results[0]['tiles'].shape[0]
    k = max(1, -(-min_tile // side))
    header = np.hstack([caption(t, side * k) for t in PANELS])
    rows = [header]
    for r in results:
        p = r['p_' + r['label']]
        rows.append(caption(f'{Path(r["path"]).name}: {r["label"]} (p {p:.2f}), onset {r["onset"]}, apex {r["apex"]}',
                            header.shape[1]))
        rows.append(cv2.resize(r['tiles'], None, fx=k, fy=k, interpolation=cv2.INTER_NEAREST))
    return np.vstack(rows)


def save_figure(path, results):
    """Writes the titled panels of every clip (`figure`) to `path` atomically."""
    ok, data = cv2.imencode(Path(path).suffix, figure(results))
    if not ok:
        raise DatasetError(f'{path}: cannot encode a picture of this type; give a .png or .jpg name')
    atomic_write(path, data.tobytes())


# ----------------------------------------------------------------------------------------------- the command
def figure_path(name):
    """--figure as a Path (None when not given), checked before any work: a picture's suffix, an existing folder."""
    fig = Path(name) if name else None
    if fig is not None and fig.suffix.lower() not in ('.png', '.jpg', '.jpeg'):
        raise DatasetError(f'--figure {fig}: give a .png or .jpg file name')
    if fig is not None and not fig.parent.is_dir():
        raise DatasetError(f'--figure {fig}: the folder {fig.parent} does not exist')
    if fig is not None:
        from video import outputs
        outputs.check_writable(fig, '--figure')
    return fig


def load(path, stabilise, quiet):
    """A saved model: {'net', 'cfg' (the settings it was trained with, a faceless onset an error, head motion
    removed or not), 'record' (model.pt's dict), 'temperature' (its calibration, 1 where it has none)}."""
    from engine import cli, weights
    from util import files
    fields = set(config.result_settings(config.PAPER))
    net, d = weights.load_model(path, fields, pipeline.constants(), config.CLASSES, files.code_version())
    said, synthetic = weights.describe(d)
    log.info('%s: %s', path, said)
    if synthetic:
        log.warning('%s was trained on the synthetic demo set: its labels mean nothing on real faces; train on your '
                    'licensed data (mer.py --data ... --save-model) to predict', path)
    cal = d.get('calibration')
    if cal and not cal.get('helps', True):
        log.info('%s: probabilities as the network gives them: the temperature %.3f fitted on %d out-of-fold '
                 'predictions of the LOSO with its settings did not help on folds it was not fitted to (ECE %.3f -> '
                 '%.3f); read them as scores, not as how often it is right', path, cal['temperature'], cal['n'],
                 cal['ece_before'], cal['ece_crossfit'])
        cal = None
    elif cal:
        log.info('%s: probabilities calibrated by temperature %.3f (fitted on %d out-of-fold predictions of the '
                 'LOSO with its settings; %s)', path, cal['temperature'], cal['n'],
                 f'on folds it was not fitted to ECE {cal["ece_before"]:.3f} -> {cal["ece_crossfit"]:.3f}'
                 if 'ece_crossfit' in cal else f'ECE {cal["ece_before"]:.3f} -> {cal["ece_after"]:.3f} on them')
    else:
        log.info('%s: its probabilities are uncalibrated (no LOSO of its settings calibrated them): read them as '
                 'scores, not as how often it is right', path)
    cfg = cli.run_config(config.Config(**dict(d['settings'], no_face='error', stabilise=stabilise)), quiet=quiet)
    return dict(net=net, cfg=cfg, record=d, temperature=float(cal['temperature']) if cal else 1.0)


COLUMNS = ['path', 'label', *(f'p_{c}' for c in config.CLASSES), 'onset', 'apex']


def check_path(path):
    """A clip's path checked before any long work, without reading it: it exists, and a file OpenCV opens or a
    folder of numbered frames."""
    p = Path(path)
    if not p.exists():
        raise DatasetError(f'{p}: no such file or folder; {HINT}')
    if p.is_dir():
        return open_clip(p, 1.0) and None
    cap = cv2.VideoCapture(str(p))
    ok = cap.isOpened()
    cap.release()
    if not ok:
        raise no_frames(p)


def run(a):
    """`mer.py predict`: loads the model, checks every clip, predicts each (read once, as far as needed), prints a
    line (or JSON) per clip, and rewrites --out after each."""
    from tqdm import tqdm

    from video import outputs
    fig = figure_path(a.figure)
    out = outputs.out_path(a.out)
    for p in a.paths:                       # every path checked before the model is loaded
        check_path(p)
    if not Path(a.model).exists():
        raise DatasetError(f'--model {a.model}: no such model file; give the model.pt that mer.py --save-model '
                           'wrote (README: "Run it on your own clip")')
    # The onset's face is checked by choose_onset; head motion is removed unless asked not to, whatever training
    # did (lab recordings hold the head still; a clip of your own rarely does).
    model = load(a.model, stabilise=not a.no_stabilise, quiet=a.quiet)
    log.info('%s: %s', a.model, model['cfg'].row())
    info = outputs.meta(['predict', *a.argv], a.model, model['record'])
    t0 = time.time()
    results = []
    for p in tqdm(a.paths, unit='clip', desc='predict', disable=a.quiet or len(a.paths) < 2):
        clip = open_clip(p, a.fps, keep_from=a.onset or 0)
        r = predict_clip(clip, model, config.CLASSES, onset=a.onset, apex=a.apex, no_face=a.no_face,
                         max_frames=a.max_frames, domain=a.domain)
        del clip                            # its frames: one clip's at a time
        results.append(r if fig is not None else {k: v for k, v in r.items() if k != 'tiles'})
        if out is not None:                 # before the line: a stop between them leaves no printed clip out of it
            outputs.write(out, results, COLUMNS, info)
        print(json.dumps({k: v for k, v in r.items() if k != 'tiles'}) if a.json else line(r, config.CLASSES),
              flush=True)
    log.info('%d clip%s in %.1f s', len(results), 's' * (len(results) > 1), time.time() - t0)
    if out is not None:
        log.info('%d results written to %s', len(results), out)
    if fig is not None:
        save_figure(fig, results)
        log.info('figure saved to %s (columns, titled: onset, apex, the apex the flow sees, flow)', fig)
    return 0
