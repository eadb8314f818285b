import cv2
import numpy as np
import pytest

import align
import stabilise
from data import synth
from data.frames import FrameError, read_frames


@pytest.fixture(scope='module')
def photos():
    return synth.photos()


def test_one_face_per_shipped_photo_and_landmarks_inside_box(photos):
    for img in photos:
        faces = align.detect_faces(img, upsample=1)
        assert len(faces) == 1
        (l, t, r, b), _ = faces[0]
        lm = align.detect_landmarks(img)
        assert lm.shape == (68, 2)
        # The jaw line may leave the box by a few pixels; the inner face (brows, eyes, nose, mouth) may not.
        inner = lm[17:]
        assert (inner[:, 0] >= l).all() and (inner[:, 0] <= r).all()
        assert (inner[:, 1] >= t).all() and (inner[:, 1] <= b).all()


def test_similarity_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    m = cv2.getRotationMatrix2D((50, 60), 17.0, 1.3)
    m[:, 2] += [4.0, -7.0]
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(align.similarity(src, dst), m, atol=1e-9)


@pytest.mark.parametrize('angle,scale,shift', [(12.0, 0.8, (25, -18)), (-8.0, 1.2, (-30, 10))])
def test_aligned_crop_of_moved_copy_matches_aligned_original(photos, angle, scale, shift):
    img = photos[1]
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += shift
    moved = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    a = align.align_clip([img], 224)[0][0].astype(np.float32)
    b = align.align_clip([moved], 224)[0][0].astype(np.float32)
    # Measured on 224 px crops: anchors of the two aligned faces agree within 2.5 px (the landmark detector's
    # own jitter), and the central face differs by 2.7-12.8 grey levels on average after a 2 px blur.
    pa = align.anchor_points(align.detect_landmarks(a.astype(np.uint8)))
    pb = align.anchor_points(align.detect_landmarks(b.astype(np.uint8)))
    assert np.linalg.norm(pa - pb, axis=1).max() < 3.5
    blur = [cv2.GaussianBlur(x, (0, 0), 2)[40:184, 40:184] for x in (a, b)]
    assert np.abs(blur[0] - blur[1]).mean() < 16


def test_one_transform_per_clip_keeps_the_motion_within_the_clip(photos):
    # Frame 1 is frame 0 shifted by (3, 2) px: aligned with the onset's transform (a pure scale k here would keep
    # it a shift of (3k, 2k)), the shift survives; aligning each frame on its own would remove it.
    img = photos[0]
    h, w = img.shape[:2]
    shifted = cv2.warpAffine(img, np.float64([[1, 0, 3], [0, 1, 2]]), (w, h), borderMode=cv2.BORDER_REPLICATE)
    clip, _ = align.align_clip([img, shifted, img], 112)
    assert clip.shape == (3, 112, 112, 3) and clip.dtype == np.uint8
    assert np.array_equal(clip[0], clip[2])
    m = align.face_transform(img, 112)
    expected = m[:, :2] @ np.array([3.0, 2.0])                 # the shift in aligned pixels
    assert np.array_equal(clip[1], cv2.warpAffine(shifted, m, (112, 112), flags=cv2.INTER_LINEAR,
                                                  borderMode=cv2.BORDER_REPLICATE))
    g0, g1 = (cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) for f in clip[:2])
    (dx, dy), _ = cv2.phaseCorrelate(g0, g1, cv2.createHanningWindow((112, 112), cv2.CV_32F))
    assert np.hypot(*expected) > 1.5
    np.testing.assert_allclose([dx, dy], expected, rtol=0.3)


def test_no_face_is_an_error_naming_the_file_or_a_logged_centre_crop(caplog):
    blank = np.full((120, 160, 3), 128, np.uint8)
    with pytest.raises(align.FaceNotFound, match=r'^sub01/img1\.jpg: no face found by the dlib detector'):
        align.align_clip([blank], 64, name='sub01/img1.jpg')
    # The centre crop is the central square of the frame, scaled to the output: columns 20..139 of 160 here.
    ramp = np.tile(np.arange(160, dtype=np.uint8)[None, :, None], (120, 1, 3))
    ramp[:10] = 255                                  # a marker along the top rows, to check the vertical extent
    out, _ = align.align_clip([ramp], 60, name='sub01/img1.jpg', no_face='center')
    assert out.shape == (1, 60, 60, 3)
    assert 'sub01/img1.jpg: no face found, using a centre crop' in caplog.text
    row = out[0, 30, :, 0].astype(float)
    assert abs(row[0] - 20.5) < 2 and abs(row[-1] - 138.5) < 2 and np.all(np.diff(row) > 0)
    assert out[0, :4, 30, 0].min() == 255 and out[0, 6:, 30, 0].max() < 255    # 10 of 120 rows -> 5 of 60


def test_unreadable_frame_names_the_file(tmp_path):
    bad = tmp_path / 'img7.jpg'
    bad.write_bytes(b'not an image')
    with pytest.raises(FileNotFoundError, match='img7.jpg: cannot read this frame'):
        read_frames([bad])


def test_missing_landmark_model_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match='landmark model missing'):
        align.landmark_model_path(tmp_path / 'none.dat')
    with pytest.raises(FileNotFoundError, match=r'a folder, not the dlib 68-point landmark model; pass the \.dat'):
        align.landmark_model_path(tmp_path)


@pytest.mark.parametrize('ext,keep', [('.jpg', 0.6), ('.png', 0.7), ('.bmp', 0.8)])
def test_a_truncated_frame_is_an_error_naming_the_file(photos, tmp_path, ext, keep):
    whole = tmp_path / f'img1{ext}'
    assert cv2.imwrite(str(whole), photos[0])
    assert len(read_frames([whole])) == 1                          # the whole file reads
    data = whole.read_bytes()
    cut = tmp_path / f'img2{ext}'
    cut.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(FrameError, match=rf'img2\{ext}: .*truncated'):
        read_frames([whole, cut])


def test_a_clip_whose_frames_change_size_is_an_error(photos, tmp_path):
    # One transform per clip needs frames of one size: the reader says so, naming the clip's first file.
    paths = [tmp_path / 'img1.jpg', tmp_path / 'img2.jpg']
    cv2.imwrite(str(paths[0]), photos[0])
    cv2.imwrite(str(paths[1]), cv2.resize(photos[0], None, fx=0.5, fy=0.5))
    with pytest.raises(FrameError, match=r'img1\.jpg: .*differ in size'):
        read_frames(paths)


def test_alignment_never_reflects_the_face(photos, monkeypatch):
    # Landmarks whose anchors are the template mirrored left-right (the eyes and mouth corners swapped): the
    # best similarity with a reflection would map them exactly; alignment keeps a rotation (det > 0) and so
    # cannot map them exactly.
    size = 128
    mirrored = align.TEMPLATE * size
    mirrored[:, 0] = size - mirrored[:, 0]
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[30], lm[48], lm[54] = mirrored[0], mirrored[1], mirrored[2], mirrored[3], mirrored[4]
    monkeypatch.setattr(align, 'detect_landmarks', lambda *a, **kw: lm)
    clip, m = align.align_clip([photos[0], photos[0]], size)
    assert np.linalg.det(m[:, :2]) > 0
    assert clip.shape == (2, size, size, 3)
    mapped = align.anchor_points(lm) @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - align.TEMPLATE * size).max() > 10          # a reflection would have fitted to ~0 px


def test_rigid_head_motion_is_removed_from_onset_to_each_frame(photos):
    # A clip that only turns and shifts (up to 2 degrees, (6, -4) px, 2 % scale): with stabilisation the flow
    # left on the aligned face is a small fraction of a pixel; without, it is the head's motion.
    import flow
    img = photos[1]
    h, w = img.shape[:2]
    clip = []
    for k in range(3):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 1.0 * k, 1.0 + 0.01 * k)
        m[:, 2] += [3.0 * k, -2.0 * k]
        clip.append(cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))

    def residual(stable):
        a = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in (stabilise if stable else align).align_clip(clip, 128)[0]]
        return [float(np.median(np.linalg.norm(flow.optical_flow(a[0], f, 'farneback')[16:-16, 16:-16], axis=2)))
                for f in a[1:]]
    raw, left = residual(False), residual(True)
    assert min(raw) > 1.0, raw
    assert max(left) < 0.2 and max(np.divide(left, raw)) < 0.1, (raw, left)
