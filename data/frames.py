"""Reading frame files: every image of a clip is checked whole before it is decoded, and a bad one is named; the
frames of one clip must have one size (alignment warps them all by the onset's transform)."""
from pathlib import Path

import cv2
import numpy as np


class FrameError(ValueError):
    """A frame file that is cut short, or a clip whose frames differ in size; the message names the file."""


def truncated(path, data):
    """Why an image file's bytes end early (JPEG without its end marker, PNG without IEND, BMP shorter than its
    header says), or '' when they look whole. OpenCV decodes such files silently, the missing rows grey."""
    if data[:2] == b'\xff\xd8' and b'\xff\xd9' not in data[-64:]:
        return 'the JPEG data ends without its end-of-image marker'
    if data[:8] == b'\x89PNG\r\n\x1a\n' and b'IEND' not in data[-16:]:
        return 'the PNG data ends without its IEND chunk'
    if data[:2] == b'BM' and len(data) >= 6 and len(data) < int.from_bytes(data[2:6], 'little'):
        return f'the BMP file has {len(data)} of the {int.from_bytes(data[2:6], "little")} bytes its header gives'
    return ''


def read_frames(paths):
    """List of BGR uint8 frames read from `paths`, all of one size; an unreadable or cut-short file, or frames of
    different sizes, is an error naming the file."""
    frames = []
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except OSError:
            data = b''
        why = truncated(p, data) if data else ''
        if why:
            raise FrameError(f'{p}: {why} (a truncated file; decoders fill the missing rows with grey or fail); '
                             'copy the frame again from the release')
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is None:
            raise FileNotFoundError(f'{p}: cannot read this frame (missing, empty or not an image); '
                                    'copy the frame again from the release')
        frames.append(img)
    return list(same_size(frames, str(paths[0]))) if frames else frames


def same_size(frames, name):
    """Yields the frames as BGR, checking that they all have the first one's size (one transform per clip)."""
    first = None
    for i, f in enumerate(frames):
        if first is None:
            first = f.shape[:2]
        elif f.shape[:2] != first:
            raise FrameError(f'{name}: the clip\'s frames differ in size ({first[1]}x{first[0]}, '
                             f'{f.shape[1]}x{f.shape[0]} at frame {i}); one transform per clip needs frames of one '
                             'size: check the clip\'s folder')
        yield f if f.ndim == 3 else cv2.cvtColor(f, cv2.COLOR_GRAY2BGR)
