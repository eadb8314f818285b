"""tools.devclips, the development set's scorer: what its cached curves depend on."""
from tools import devclips
from video import intervals


def test_a_cached_curve_is_tracked_again_for_the_trackers_settings_and_not_for_the_spotters():
    # Spotting under another setting reads the same curve: the grid and a new rule of `spot` reuse the cache.
    assert devclips.track_key({'murmur': 1.0, 'smile_rise': 0.1}) == devclips.track_key({})
    for key in intervals.TRACKED:
        value = {'method': 'baseline', 'baseline_s': (0.3, 0.9)}.get(key) or 2 * intervals.SPOTTING[key]
        assert devclips.track_key({key: value}) != devclips.track_key({}), key
