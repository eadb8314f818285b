"""The MEGC2019 baseline of Table I: LBP-TOP on the aligned grey clip after TIM, and a linear SVM, LOSO.

As the MEGC2019 recognition guidelines specify it (See et al., FG 2019):
- the clip aligned (align.py: one similarity per clip, from its first frame) and turned grey;
- the Temporal Interpolation Model (Zhou et al., CVPR 2011; Pfister et al., ICCV 2011) resamples it to 10 frames
  (`tim`): the frames are mapped linearly onto the curve that embeds a path graph, and read back at 10 even steps;
- LBP-TOP (Zhao & Pietikainen, TPAMI 2007) with radii R_X = R_Y = 1, R_T = 4 and P = 4 neighbours on each of the
  XY, XT and YT planes (`lbp_plane`), 16-bin histograms per plane in each of 5 x 5 non-overlapping blocks,
  concatenated (`lbptop`): 5 * 5 * 3 * 16 = 1200 values per clip;
- a linear SVM (scikit-learn's LinearSVC), trained per LOSO fold on every other micro subject.
Left open by the guidelines, the common choices here: the clip from onset to its last frame (the releases' clips
end at or after the offset); each histogram normalised to sum 1; codes over the frames whose temporal neighbours
exist (t in [R_T, T - R_T), as in Zhao's reference code); LinearSVC with C = 1 on standardised features.
"""
import numpy as np

RADII = (1, 1, 4)          # R_X, R_Y, R_T
POINTS = 4                 # P on each plane
BLOCKS = 5                 # 5 x 5 blocks
TIM_FRAMES = 10
SVM_C = 1.0
# Every constant of the baseline, under one set of names: its run folder's config.json and its cache key.
SETTINGS = dict(radii=RADII, points=POINTS, blocks=BLOCKS, tim_frames=TIM_FRAMES, svm_c=SVM_C)


def tim(frames, n_out=TIM_FRAMES):
    """(n_out, ...) float64 frames resampled by the Temporal Interpolation Model (Zhou et al. 2011).

    The n input frames are points x_1..x_n; the path graph on them embeds into n - 1 dimensions by the closed-form
    eigenvectors y_k(t) = sin(pi k t + pi (n - k) / (2 n)), t = 1/n .. 1 (Pfister et al. 2011). A linear map from
    that curve onto the mean-removed frames is fitted exactly, and the curve is read at n_out even steps of t."""
    x = np.asarray(frames, np.float64)
    n = len(x)
    if n < 2:
        raise ValueError(f'TIM needs at least 2 frames, got {n}')
    flat = x.reshape(n, -1)
    mean = flat.mean(0)

    def curve(t):
        k = np.arange(1, n)[:, None]
        return np.sin(np.pi * k * t[None, :] + np.pi * (n - k) / (2 * n))      # (n - 1, len(t))

    y = curve(np.arange(1, n + 1) / n)
    # The frames' mean-removed rows lie in the span of y's rows (both are orthogonal to the constant vector), so
    # the least-squares map m with m @ y = (flat - mean).T is exact.
    m = np.linalg.lstsq(y.T, flat - mean, rcond=None)[0]                          # (n - 1, pixels)
    out = curve(np.linspace(1 / n, 1, n_out)).T @ m + mean
    return out.reshape((n_out,) + x.shape[1:])


def lbp_plane(vol, axes, radii, points=POINTS):
    """LBP codes (0 .. 2^points - 1) of every voxel of `vol` (T, H, W) whose neighbours exist, in one plane.

    axes = (a, b): the plane's two axes of vol; radii = (r_a, r_b). Neighbour p sits at angle 2 pi p / points,
    at (-r_a sin, r_b cos) in (a, b), and sets bit p when it is >= the centre (scikit-image's 'default' order).
    With 4 points every neighbour falls on the grid, so no interpolation is needed."""
    if points != 4:
        raise ValueError('lbp_plane samples on the grid: 4 points only (the MEGC2019 baseline)')
    v = np.asarray(vol, np.float64)
    ra, rb = radii
    lo = [RADII[2], RADII[1], RADII[0]]           # keep every plane's codes on the same voxels: t, y, x margins
    sl = tuple(slice(m, s - m) for m, s in zip(lo, v.shape))
    centre = v[sl]
    code = np.zeros(centre.shape, np.int64)
    for p in range(points):
        ang = 2 * np.pi * p / points
        shift = [0, 0, 0]
        shift[axes[0]] = int(round(-ra * np.sin(ang)))
        shift[axes[1]] = int(round(rb * np.cos(ang)))
        nb = v[tuple(slice(m + d, s - m + d) for m, d, s in zip(lo, shift, v.shape))]
        code |= (nb >= centre).astype(np.int64) << p
    return code


def lbptop(vol, blocks=BLOCKS, points=POINTS):
    """(blocks * blocks * 3 * 2^points,) float64 LBP-TOP histograms of a grey clip (T, H, W), per block and plane."""
    v = np.asarray(vol, np.float64)
    rx, ry, rt = RADII
    if v.ndim != 3 or v.shape[0] < 2 * rt + 1 or min(v.shape[1:]) < blocks + 2:
        raise ValueError(f'LBP-TOP needs a (T >= {2 * rt + 1}, H, W) clip of at least {blocks + 2} px, got {v.shape}')
    planes = [lbp_plane(v, (1, 2), (ry, rx), points),    # XY: rows and columns of each frame
              lbp_plane(v, (0, 2), (rt, rx), points),    # XT: time and columns of each row
              lbp_plane(v, (0, 1), (rt, ry), points)]    # YT: time and rows of each column
    h, w = planes[0].shape[1:]
    ys, xs = np.linspace(0, h, blocks + 1).astype(int), np.linspace(0, w, blocks + 1).astype(int)
    bins = 2 ** points
    out = []
    for i in range(blocks):
        for j in range(blocks):
            for codes in planes:
                hist = np.bincount(codes[:, ys[i]:ys[i + 1], xs[j]:xs[j + 1]].ravel(), minlength=bins)
                out.append(hist / max(1, hist.sum()))
    return np.concatenate(out)


def clip_features(frames, align_size=128, no_face='error', landmarks='', name='clip'):
    """LBP-TOP of one sample from its frames (BGR), onset to the last: aligned, grey, TIM to 10 frames."""
    import cv2

    import align
    clip, _ = align.align_clip(frames, align_size, name=name, no_face=no_face, landmarks_path=landmarks or None)
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in clip])
    return lbptop(tim(grey))


def svm_predict(x_train, y_train, x_test, c=SVM_C):
    """Predicted labels of x_test by a linear SVM trained on standardised x_train (per LOSO fold)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC
    clf = make_pipeline(StandardScaler(), LinearSVC(C=c, max_iter=20000))
    return clf.fit(x_train, y_train).predict(x_test)
