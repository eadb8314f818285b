"""tools.devclips, the development set's scorer: what its cached curves depend on."""
from tools import devclips
from video import intervals


def test_a_cached_curve_is_tracked_again_for_the_trackers_settings_and_not_for_the_spotters():
    # Spotting under another setting reads the same curve: the grid and a new rule of `spot` reuse the cache.
    assert devclips.track_key({'murmur': 1.0, 'smile_rise': 0.1}) == devclips.track_key({})
    for key in intervals.TRACKED:
        value = {'method': 'baseline', 'baseline_s': (0.3, 0.9)}.get(key) or 2 * intervals.SPOTTING[key]
        assert devclips.track_key({key: value}) != devclips.track_key({}), key


def test_a_clip_whose_file_states_the_wrong_rate_is_tracked_at_the_annotated_one(tmp_path, monkeypatch):
    # LIA's vox_driving1.mp4 holds 25-fps frames in a file that says 10 fps: its annotation's spot_fps is what
    # `mer.py spot --fps 25` would be given, and its curve is cached apart from one at the file's rate.
    import cv2
    import numpy as np
    clip = tmp_path / 'src' / 'clip.avi'
    clip.parent.mkdir()
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*'MJPG'), 10.0, (32, 32))
    for i in range(4):
        w.write(np.full((32, 32, 3), 40 * i, np.uint8))
    w.release()
    seen = []
    monkeypatch.setattr(intervals, 'motion', lambda frames, fps, name, settings: seen.append(fps) or {'fps': fps})
    assert devclips.curve_of(clip, {}, tmp_path / 'cache', 25.0) == {'fps': 25.0}
    assert devclips.curve_of(clip, {}, tmp_path / 'cache') == {'fps': 10.0}
    assert seen == [25.0, 10.0]
    assert devclips.curve_of(clip, {}, tmp_path / 'cache', 25.0) == {'fps': 25.0} and len(seen) == 2
