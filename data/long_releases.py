"""The long-video releases of MEGC's spotting task, as they unpack, -> a list of videos with their true intervals.

    CAS(ME)^2   CAS(ME)^2code_final.xlsx (or ...(Updated).xlsx) + rawpic/s15/15_0101disgustingteeth/img1.jpg
                sheet 1 (no header): participant, expression ('disgustingteeth_1'), onset, apex, offset (0: none
                annotated), AUs, emotion, 'micro-expression' | 'macro-expression', self-reported emotion;
                sheet 'naming rule1': folder number (15), subject ('s15'), participant (1);
                sheet 'naming rule2': video code ('0101'), expression name ('disgustingteeth'). 30 fps.
    SAMM LV     SAMM_LongVideos_V*_Release.xlsx + SAMM_longvideos/006_1/006_1_0001.jpg
                notes above a header row: Subject, Filename ('006_1_1': subject, video, expression), Inducement
                Code, Onset, Apex, Offset, Duration, Type ('Micro - 1/2' | 'Macro'), Action Units, Notes. 200 fps.

(Layouts as the MEGC 2020 spotting baseline and MEAN read them.) A video is a dict: dataset, subject, name, path
(its folder), files (its frame paths by frame number), n (their count), fps, truths: intervals as spotscore reads them, in positions of `files` (start,
apex, end inclusive, kind by the sheet, label 0/1/2 where the sheet gives one of the three classes, else None).
An offset of 0 means none was annotated: the interval is taken to end as far after the apex as it began before
it, as the baseline's evaluation does. A row whose frames are not in its video, or whose video is not on disk, is
skipped; the skips are counted in one warning that names them.
"""
import logging
import re
from pathlib import Path

import openpyxl

from data.releases import DatasetError, frame_number, list_frames

log = logging.getLogger(__name__)

CASME_SQ_FPS, SAMM_LV_FPS = 30.0, 200.0
EMOTIONS = {'negative': 0, 'positive': 1, 'surprise': 2}
DEPTH = 3


def find(root, pattern, folder=False):
    """The shallowest path under root (at most DEPTH levels) whose lower-cased name matches the regex, or None."""
    level = [Path(root)]
    for _ in range(DEPTH + 1):
        hits = sorted(p for p in level if re.fullmatch(pattern, p.name.lower()) and (p.is_dir() if folder else
                                                                                        p.is_file()))
        if hits:
            return hits[0]
        level = [c for p in level if p.is_dir() for c in sorted(p.iterdir()) if not c.name.startswith('.')]
    return None


def _rows(path, sheet=0):
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:      # a corrupt or non-xlsx file surfaces as zipfile, KeyError, InvalidFileException...
        raise DatasetError(f'{path}: cannot read the workbook ({type(e).__name__}: {e}); replace it with the '
                           'file from the release') from None
    try:
        ws = wb.worksheets[sheet] if isinstance(sheet, int) else wb[sheet]
    except (IndexError, KeyError):
        raise DatasetError(f'{path}: no sheet {sheet!r} (sheets: {", ".join(wb.sheetnames)}); replace it with the '
                           'file from the release') from None
    rows = [r for r in ws.iter_rows(values_only=True) if any(c is not None for c in r)]
    wb.close()
    return rows


def _int(v):
    try:
        return int(float(str(v).strip()))
    except ValueError:
        return None


def interval(files, onset, apex, offset, kind, label, where, skipped):
    """A truth in positions of `files` from frame numbers, or None (and a line in skipped) when it is not in them."""
    numbers = {frame_number(f): i for i, f in enumerate(files)}
    if None in (onset, apex, offset):
        skipped.append(f'{where}: onset, apex or offset is not a number')
        return None
    if offset == 0:
        offset = min(apex + (apex - onset), max(numbers))
    if not (onset in numbers and offset in numbers and onset <= apex <= offset):
        skipped.append(f'{where}: frames {onset}-{offset} are not within the video\'s {min(numbers)}-{max(numbers)}'
                       if onset <= apex <= offset else f'{where}: onset {onset}, apex {apex}, offset {offset} are '
                       'out of order')
        return None
    a = numbers.get(apex, numbers[onset])
    return dict(start=numbers[onset], apex=a, end=numbers[offset], kind=kind, label=label)


def _settle(videos, skipped, source):
    if skipped:
        log.warning('%s: %d annotation row%s skipped: %s', source, len(skipped), 's' * (len(skipped) > 1),
                    '; '.join(skipped[:10]) + (' ...' if len(skipped) > 10 else ''))
    return videos


def load_casme_sq(root):
    """The CAS(ME)^2 videos under root (see the module's docstring)."""
    sheet = find(root, r'cas\(me\)\^?2code_final.*\.xlsx')
    frames = find(root, r'rawpic', folder=True)
    if sheet is None or frames is None:
        raise DatasetError(f'{root}: no CAS(ME)^2 release (CAS(ME)^2code_final.xlsx and rawpic/) within {DEPTH} '
                           'levels; unpack it there or pass the folder that holds it')
    wb = openpyxl.load_workbook(sheet, read_only=True)
    names = wb.sheetnames
    wb.close()
    if len(names) < 3:
        raise DatasetError(f'{sheet}: {len(names)} sheets; the release has three (the coding, naming rule1, naming '
                           'rule2): replace it with the file from the release')
    subject = {_int(r[2]): str(r[1]).strip().lower() for r in _rows(sheet, 1) if _int(r[2]) is not None}
    code = {str(r[1]).strip().lower(): str(r[0]).strip().zfill(4) for r in _rows(sheet, 2) if r[1] is not None}
    videos, skipped, by_key = [], [], {}
    for folder in sorted(p for p in frames.iterdir() if p.is_dir() and not p.name.startswith('.')):
        for v in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith('.')):
            try:
                files = list_frames(v)
            except DatasetError:
                continue
            by_key[(folder.name.lower(), v.name.split('_', 1)[-1][:4])] = len(videos)
            videos.append(dict(dataset='casme_sq', subject=folder.name, name=v.name, path=str(v), files=files,
                               n=len(files), fps=CASME_SQ_FPS, truths=[]))
    for n, r in enumerate(_rows(sheet, 0), 1):
        where = f'{sheet.name} row {n}'
        if len(r) < 8 or _int(r[0]) is None:
            continue
        expression = re.sub(r'_\d+$', '', str(r[1]).strip().lower())
        key = (subject.get(_int(r[0]), ''), code.get(expression, ''))
        if key not in by_key:
            skipped.append(f'{where}: no frame folder for participant {r[0]} {r[1]} (looked for '
                           f'rawpic/{key[0] or "?"}/*_{key[1] or "?"}*)')
            continue
        video = videos[by_key[key]]
        kind = 'micro' if 'micro' in str(r[7]).lower() else 'macro'
        label = EMOTIONS.get(str(r[6]).strip().lower())
        t = interval(video['files'], _int(r[2]), _int(r[3]), _int(r[4]), kind, label, where, skipped)
        if t is not None:
            video['truths'].append(t)
    return _settle(videos, skipped, str(sheet))


def load_samm_lv(root):
    """The SAMM Long Videos under root (see the module's docstring)."""
    sheet = find(root, r'samm_longvideos_.*\.xlsx')
    frames = find(root, r'samm_longvideos', folder=True)
    if sheet is None or frames is None:
        raise DatasetError(f'{root}: no SAMM Long Videos release (SAMM_LongVideos_V3_Release.xlsx and '
                           f'SAMM_longvideos/) within {DEPTH} levels; unpack it there or pass the folder that holds it')
    rows = _rows(sheet)
    top = next((i for i, r in enumerate(rows[:30]) if [str(c).strip().lower() for c in r[:2]] ==
                ['subject', 'filename']), None)
    if top is None:
        raise DatasetError(f'{sheet}: no header row starting Subject, Filename in the first 30 rows; replace it with '
                           'the file from the release')
    header = [str(c).strip().lower() for c in rows[top]]
    col = {h: header.index(h) for h in ('filename', 'onset', 'apex', 'offset', 'type') if h in header}
    if len(col) < 5:
        raise DatasetError(f'{sheet}: the header lacks {", ".join(sorted({"filename", "onset", "apex", "offset", "type"} - set(col)))}; '
                           'replace it with the file from the release')
    videos, skipped, by_name = [], [], {}
    for v in sorted(p for p in frames.iterdir() if p.is_dir() and not p.name.startswith('.')):
        try:
            files = list_frames(v)
        except DatasetError:
            continue
        by_name[v.name] = len(videos)
        videos.append(dict(dataset='samm_lv', subject=v.name.split('_')[0], name=v.name, path=str(v), files=files,
                           n=len(files), fps=SAMM_LV_FPS, truths=[]))
    for n, r in enumerate(rows[top + 1:], top + 2):
        where = f'{sheet.name} row {n}'
        name = str(r[col['filename']]).strip()
        video = '_'.join(name.split('_')[:2])
        if video not in by_name:
            skipped.append(f'{where}: no frame folder SAMM_longvideos/{video}')
            continue
        kind = 'micro' if 'micro' in str(r[col['type']]).lower() else 'macro'
        t = interval(videos[by_name[video]]['files'], _int(r[col['onset']]), _int(r[col['apex']]),
                     _int(r[col['offset']]), kind, None, where, skipped)
        if t is not None:
            videos[by_name[video]]['truths'].append(t)
    return _settle(videos, skipped, str(sheet))


def load_long(root):
    """Every long video of the releases found under root: CAS(ME)^2, SAMM Long Videos, or both."""
    out, errors = [], []
    for load in (load_casme_sq, load_samm_lv):
        try:
            out += load(root)
        except DatasetError as e:
            errors.append(str(e))
    if not out:
        if len(errors) == 2 and all('no ' in e and 'release' in e for e in errors):
            raise DatasetError(f'{root}: neither CAS(ME)^2 (CAS(ME)^2code_final.xlsx, rawpic/) nor SAMM Long Videos '
                               '(SAMM_LongVideos_V3_Release.xlsx, SAMM_longvideos/) is there; unpack a release there '
                               'or pass the folder that holds it')
        raise DatasetError(errors[0] if errors else f'{root}: the releases hold no video with frames')
    return out
