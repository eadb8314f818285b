"""Datasets -> list[Sample]: the MEGC2019 composite (CASME II, SAMM, SMIC-HS), CK+, or a user's own index csv.

load_megc(root) reads the official composite list `combined_3class_gt.csv` and the three releases as they unpack,
each found by name within 4 folder levels under root:
    CASME II  CASME2-coding-20140508.xlsx (Sheet1) + CASME2_RAW_selected/sub01/EP02_01f/img46.jpg
              (or the cropped release: Cropped/ or CASME2_Cropped/ .../reg_img46.jpg)
    SAMM      SAMM_Micro_FACS_Codes_v2.xlsx (MICRO_ONLY) + SAMM/006/006_1_2/006_05562.jpg
    SMIC-HS   SMIC_all_raw/HS/s1/micro/negative/s1_ne_01/image000123.bmp (labels by folder, no apex annotation)
The csv decides which clips take part and their labels, the sheets give onset and apex frame numbers.
load_ckplus(root) reads CK+: cohn-kanade-images/S005/001/*.png + Emotion/S005/001/*_emotion.txt.

load_index(csv_path) reads a list of your own preprocessed clips, one per row, with a header naming the columns:
    dataset     casme2 | samm | smic | ck+ | any other name
    subject     subject id; LOSO folds leave out one (dataset, subject) at a time
    clip        clip name, unique within (dataset, subject)
    frames_dir  folder of the clip's frames (relative to the csv's folder, or absolute); images whose file names
                end in the frame number (img46.jpg, 006_05562.jpg), ordered by that number
    onset       frame NUMBER of the onset (the trailing digits of its file name, not a position)
    apex        frame NUMBER of the apex
    label       0 | 1 | 2, or negative | positive | surprise
    fps         optional: frames per second (default 200; smic 100, ck+ 30)
    domain      optional: micro | macro (default macro for ck+, micro otherwise)

Every reader collects all problem rows and raises one DatasetError listing them, or with skip_bad=True skips
them with a warning. An annotated frame that is not on disk takes the nearest frame (one warning); with
strict=True it is a problem row instead. An apex annotated before its onset is always a problem row.
"""
import csv
import fnmatch
import logging
import re
from pathlib import Path

import openpyxl

from config import CLASSES, DEFAULT_FPS, FPS, Sample

log = logging.getLogger(__name__)

IMAGE_EXTS = {'.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff'}
SEARCH_DEPTH = 4
# CK+ emotion codes -> 0 negative, 1 positive, 2 surprise. Sadness (6) is negative: the authors' code maps it to
# positive, a bug we do not copy. 0 (neutral) has no class and is an error.
CK_CODES = {1: 0, 2: 0, 3: 0, 4: 0, 5: 1, 6: 0, 7: 2}
# What the readers look for under root: (description, release name, accepted lower-cased names, required child).
PIECES = {
    'csv': ('MEGC2019 list', 'combined_3class_gt.csv', ('combined_3class_gt.csv',), None),
    'casme2_sheet': ('CASME II coding sheet', 'CASME2-coding-20140508.xlsx',
                     ('casme2-coding*.xlsx', 'casme2_coding*.xlsx'), None),
    'casme2_frames': ('CASME II frames', 'CASME2_RAW_selected',
                      ('casme2_raw_selected', 'casme2-raw-selected', 'casme2_raw', 'casme2_cropped', 'cropped'),
                      r'sub\d+'),
    'samm_sheet': ('SAMM coding sheet', 'SAMM_Micro_FACS_Codes_v2.xlsx', ('samm_micro_facs_codes*.xlsx',), None),
    'samm_frames': ('SAMM frames', 'SAMM', ('samm', 'samm_crop*'), r'\d{3}'),
    'smic_frames': ('SMIC-HS frames', 'HS', ('hs',), r's\d+'),
    'ck_images': ('CK+ images', 'cohn-kanade-images', ('cohn-kanade-images', 'cohn-kanade'), r's\d+'),
    'ck_emotion': ('CK+ emotion labels', 'Emotion', ('emotion',), r's\d+'),
}
MEGC_PIECES = {'casme2': ('sheet', 'frames'), 'samm': ('sheet', 'frames'), 'smic': ('frames',)}
# Each MEGC2019 dataset's subjects as the official list combined_3class_gt.csv writes them (sub01, 6, s01): a
# subject written otherwise, up to zero padding and case (sub1, 006, S1), takes this spelling, so that its fold,
# the fold's seed, the logs and megc_log.txt are the same however the data spelled it. The list's own spelling,
# not the release folders' (SAMM 006, SMIC s1), is the one MEGC's sheets and every published fold name use.
OFFICIAL = {'casme2': (r'sub0*(\d+)', 'sub{:02d}'), 'samm': (r'0*(\d+)', '{:d}'), 'smic': (r's0*(\d+)', 's{:02d}')}


class DatasetError(Exception):
    """A dataset that cannot be read as given; the message names the file or row and what to do."""


def frame_number(path):
    """The frame number of an image path: the trailing digits of its stem (reg_img46.jpg -> 46), or None."""
    m = re.search(r'(\d+)$', Path(path).stem)
    return int(m[1]) if m else None


def list_frames(folder):
    """Paths (str) of the numbered images in folder, sorted by frame number; DatasetError if none or no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f'clip folder {folder} not found')
    # Hidden files are never frames: macOS copies leave '._img46.jpg' (resource forks) beside 'img46.jpg'.
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and frame_number(p) is not None
             and not p.name.startswith('.')]
    if not files:
        raise DatasetError(f'no numbered image frames in {folder}')
    return tuple(str(p) for p in sorted(files, key=lambda p: (frame_number(p), p.name)))


def _not_a_folder(path):
    return 'a file, not a folder' if path.exists() else 'folder not found'


_padded = set()
_renamed = set()


def official_subject(dataset, subject):
    """The MEGC2019 list's spelling of a subject of casme2, samm or smic written up to zero padding and case
    (sub1 -> sub01, 006 -> 6, S1 -> s01; OFFICIAL), or None when it is not written like one."""
    pattern, form = OFFICIAL[dataset]
    m = re.fullmatch(pattern, subject, re.IGNORECASE)
    return form.format(int(m[1])) if m else None


def index_subject(dataset, subject, names):
    """The one spelling of a subject of an index: the MEGC2019 list's for its datasets, else the first spelling
    met in `names` {(dataset, its form without case or zero padding): spelling} of those equal up to them."""
    name = dataset in OFFICIAL and official_subject(dataset, subject)
    return name or names.setdefault((dataset, re.sub(r'0*(\d+)', r'\1', subject.lower())), subject)


def one_name(dataset, subject, name, where):
    """`name`, the one spelling of `subject` from now on, logged once a subject when the two differ."""
    if name != subject and (dataset, subject) not in _renamed:
        _renamed.add((dataset, subject))
        log.info('%s: %s subject %s is %s everywhere (fold, seed, logs, megc_log.txt), as the MEGC2019 list spells it',
                 where, dataset, subject, name)
    return name


def subject_folder(parent, name):
    """parent/name, or else the one folder in parent whose name differs from it only in the zero padding of its
    number (a csv that writes sub1 where the release has sub01), logged once a subject."""
    path = parent / name
    m = re.fullmatch(r'(\D*?)0*(\d+)', name)
    if path.is_dir() or not m or not parent.is_dir():
        return path
    hits = [p for p in parent.iterdir() if p.is_dir() and re.fullmatch(rf'{re.escape(m[1])}0*{m[2]}', p.name,
                                                                        re.IGNORECASE)]
    if len(hits) != 1:
        return path
    if hits[0] not in _padded:
        _padded.add(hits[0])
        log.info('subject %s is folder %s in %s (its number padded otherwise)', name, hits[0].name, parent)
    return hits[0]


def find(root, piece, depth=SEARCH_DEPTH):
    """The shallowest path within `depth` levels under root that is the named piece (see PIECES), or DatasetError."""
    what, name, patterns, child = PIECES[piece]

    def fits(p):
        if child is None:
            return p.is_file()
        return p.is_dir() and any(c.is_dir() and re.fullmatch(child, c.name.lower()) for c in p.iterdir())

    level = [Path(root)]
    for _ in range(depth):
        level = sorted(c for p in level if p.is_dir() for c in p.iterdir() if not c.name.startswith('.'))
        # Raw frames win over cropped ones (align.py aligns faces itself): earlier patterns first, then a 'raw'
        # in the path (SMIC_all_raw/HS before SMIC_all_cropped/HS).
        for pattern in patterns:
            hits = [p for p in level if fnmatch.fnmatch(p.name.lower(), pattern) and fits(p)]
            if hits:
                return min(hits, key=lambda p: 'raw' not in str(p.relative_to(root)).lower())
    others = [p for p in patterns if p != name.lower()]
    also = f' (or {", ".join(others)})' if others else ''
    raise DatasetError(f'{what} not found: no {name}{also} within {depth} levels under {root}; unpack the release '
                       'there or pass the folder that holds it')


def sheet_index(path, sheet, required=('subject', 'filename')):
    """{(subject number, filename): [(Excel row number, {header, lower case without spaces: value}), ...]}."""
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:      # a corrupt or non-xlsx file surfaces as zipfile, KeyError, InvalidFileException...
        raise DatasetError(f'{path}: cannot read the workbook ({type(e).__name__}: {e}); '
                           f'replace it with the file from the release') from None
    ws = wb[sheet] if sheet in wb.sheetnames else wb.worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    wb.close()
    # The SAMM header sits under a block of notes (row 14 in v2): find it by its cells, not its position.
    top = next((i for i, row in enumerate(rows[:50])
                if all(r in [re.sub(r'\s+', '', str(c)).lower() for c in row] for r in required)), None)
    if top is None:
        raise DatasetError(f'{path} (sheet {ws.title}): no header row with {" and ".join(required)} in the first '
                           f'50 rows; replace it with the file from the release')
    header = [re.sub(r'\s+', '', str(c)).lower() for c in rows[top]]
    index = {}
    for n, row in enumerate(rows[top + 1:], top + 2):
        row = dict(zip(header, row))
        try:
            key = int(str(row['subject']).strip()), str(row['filename']).strip()
        except ValueError:      # blank rows, notes and totals under the table
            continue
        index.setdefault(key, []).append((n, row))
    return index


def _int(value, what):
    try:
        return int(float(str(value).strip()))
    except ValueError:
        raise DatasetError(f'{what} is {value!r}, not a frame number') from None


def _label(text):
    word = str(text).strip().lower()
    if word in ('0', '1', '2'):
        return int(word)
    if word in CLASSES:
        return CLASSES.index(word)
    raise DatasetError(f'unknown label {text!r} (expected 0 negative, 1 positive, 2 surprise)')


def _sheet_frames(sheet, key):
    """(onset number, apex number) of one clip from its coding sheet row."""
    name, index = sheet
    hits = index.get(key, [])
    if len(hits) != 1:
        rows = f' (rows {", ".join(str(n) for n, _ in hits)})' if hits else ''
        raise DatasetError(f'{len(hits) or "no"} rows for subject {key[0]} {key[1]} in {name}{rows}')
    n, row = hits[0]
    # CASME II writes '/' where no apex was found (sub04 EP12_01f): no frame choice would be the annotation.
    return tuple(_int(row.get(col), f'{name} row {n} {col}') for col in ('onsetframe', 'apexframe'))


def locate(frames, onset, apex, strict=False):
    """(onset index, apex index, notes) of annotated frame numbers; a number not on disk takes the nearest frame."""
    numbers = [frame_number(f) for f in frames]
    idx, notes = [], []
    for what, number in (('onset', onset), ('apex', apex)):
        if number in numbers:
            idx.append(numbers.index(number))
            continue
        if strict:
            raise DatasetError(f"annotated {what} frame {number} is not among the clip's frames "
                               f"{numbers[0]}-{numbers[-1]} (without --strict the nearest frame is used)")
        i = min(range(len(numbers)), key=lambda k: abs(numbers[k] - number))
        idx.append(i)
        notes.append(f'{what} {number} -> {numbers[i]}')
    # An apex before the onset contradicts the annotation itself; swapping would reverse the flow's sign.
    if idx[1] < idx[0]:
        raise DatasetError(f'apex frame {apex} precedes onset frame {onset}')
    return idx[0], idx[1], notes


def _settle(problems, source, noun, skip_bad):
    """Raises one DatasetError listing the problems, or (skip_bad) logs them as skipped."""
    if not problems:
        return
    head = f'{source}: {len(problems)} problem {noun}{"s" if len(problems) > 1 else ""}'
    lines = ''.join(f'\n  {p}' for p in problems)
    if skip_bad:
        log.warning('%s skipped:%s', head, lines)
        return
    raise DatasetError(f'{head} (pass --skip-bad to skip {"them" if len(problems) > 1 else "it"}):{lines}')


def _warn_nearest(quirks):
    if quirks:
        log.warning("%d annotated frames are not among their clip's files, the nearest frame is used "
                    "(pass --strict to refuse): %s", len(quirks), '; '.join(quirks))


def _read_csv(path):
    """The csv's rows; blank lines at the end (left by hand editing) are dropped, blank rows inside are kept."""
    try:
        with open(path, newline='', encoding='utf-8-sig') as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise DatasetError(f'{path}: not a text csv file; replace it with the official list') from None
    while rows and not any(f.strip() for f in rows[-1]):
        rows.pop()
    return rows


def _row_key(dataset, subject, clip):
    """(dataset, subject, clip) of a composite csv row, its subject (and a SMIC clip's subject prefix) as the
    MEGC2019 list spells them (OFFICIAL) where they are written like one."""
    if dataset not in OFFICIAL:
        return dataset, subject, clip
    m = re.fullmatch(r's0*(\d+)(_[a-z]+_\d+)', clip, re.IGNORECASE) if dataset == 'smic' else None
    return dataset, official_subject(dataset, subject) or subject, f's{int(m[1]):02d}{m[2].lower()}' if m else clip


def _clip(dataset, subject, clip, pieces, sheets):
    """(frames, onset number, apex number, label from the folder or None) of one composite csv row (_row_key)."""
    if dataset == 'casme2':
        m = re.fullmatch(r'sub(\d+)', subject)
        if not m:
            raise DatasetError(f'subject {subject!r} is not a CASME II subject like sub01')
        frames = list_frames(subject_folder(pieces['casme2_frames'], subject) / clip)
        return (frames, *_sheet_frames(sheets[dataset], (int(m[1]), clip)), None)
    if dataset == 'samm':
        if not subject.isdigit():
            raise DatasetError(f'subject {subject!r} is not a SAMM subject number like 6')
        frames = list_frames(subject_folder(pieces['samm_frames'], f'{int(subject):03d}') / clip)
        return (frames, *_sheet_frames(sheets[dataset], (int(subject), clip)), None)
    # SMIC-HS: the csv pads the subject (s01_ne_01), the release does not (s1/micro/negative/s1_ne_01).
    m = re.fullmatch(r's0*(\d+)(_[a-z]+_\d+)', clip)
    if not m:
        raise DatasetError(f'clip {clip!r} is not a SMIC clip name like s01_ne_01')
    if not re.fullmatch(rf's0*{m[1]}', subject):
        raise DatasetError(f'clip {clip} does not belong to subject {subject}')
    name = f's{m[1]}{m[2]}'
    hs = pieces['smic_frames']
    folders = sorted((hs / f's{m[1]}' / 'micro').glob(f'*/{name}'))
    if not folders:
        raise DatasetError(f'no clip folder {name} in {hs / f"s{m[1]}" / "micro"}/<emotion>/')
    frames = list_frames(folders[0])
    emotion = folders[0].parent.name.lower()
    if emotion not in CLASSES:
        raise DatasetError(f'{folders[0]} is in folder {folders[0].parent.name}, not negative/positive/surprise')
    # The original SMIC-HS release has no apex annotation: onset = first frame, apex = middle frame.
    return frames, frame_number(frames[0]), frame_number(frames[len(frames) // 2]), CLASSES.index(emotion)


def load_megc(root, *, strict=False, skip_bad=False):
    """The MEGC2019 composite samples, in csv order, from the official csv and the release folders under root."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f'{root}: {_not_a_folder(root)}; pass the folder holding combined_3class_gt.csv and the '
                           f'CASME II, SAMM and SMIC releases')
    csv_path = find(root, 'csv')
    rows = _read_csv(csv_path)
    if not rows:
        raise DatasetError(f'{csv_path}: no rows; replace it with the official MEGC2019 file')
    used = {r[0].strip() for r in rows if r}
    pieces = {f'{ds}_{kind}': find(root, f'{ds}_{kind}') for ds, kinds in MEGC_PIECES.items() if ds in used
              for kind in kinds}
    sheets = {ds: (pieces[f'{ds}_sheet'].name, sheet_index(pieces[f'{ds}_sheet'], sheet))
              for ds, sheet in (('casme2', 'Sheet1'), ('samm', 'MICRO_ONLY')) if ds in used}
    for p, path in pieces.items():
        log.info('%s: %s', PIECES[p][0], path)
    samples, problems, quirks, seen = [], [], [], {}
    for n, fields in enumerate(rows, 1):
        where = f'{csv_path.name}:{n}'
        if not any(f.strip() for f in fields):
            problems.append(f'{where}: blank row')
            continue
        if len(fields) != 4:
            problems.append(f'{where}: {len(fields)} fields {",".join(fields)!r}, expected dataset,subject,'
                            f'filename,label')
            continue
        dataset, subject, clip, text = (f.strip() for f in fields)
        where += f' {dataset} {subject} {clip}'
        _, name, clip = _row_key(dataset, subject, clip)
        try:
            if (dataset, name, clip) in seen:
                raise DatasetError(f'duplicate of row {seen[dataset, name, clip]}')
            seen[dataset, name, clip] = n
            label = _label(text)
            if dataset not in ('casme2', 'samm', 'smic'):
                raise DatasetError(f'unknown dataset {dataset!r} (expected casme2, samm or smic)')
            frames, onset, apex, folder_label = _clip(dataset, name, clip, pieces, sheets)
            if folder_label is not None and folder_label != label:
                raise DatasetError(f'csv label {label} ({CLASSES[label]}) but the clip folder is under '
                                   f'{CLASSES[folder_label]}')
            i, j, notes = locate(frames, onset, apex, strict)
        except DatasetError as e:
            problems.append(f'{where}: {e}')
            continue
        quirks += [f'{dataset} {clip} {note}' for note in notes]
        samples.append(Sample(dataset, one_name(dataset, subject, name, csv_path.name), clip, frames, i, j, label,
                              FPS[dataset], 'micro'))
    _settle(problems, csv_path.name, 'row', skip_bad)
    _warn_nearest(quirks)
    if any(s.dataset == 'smic' for s in samples):
        log.info('SMIC-HS has no apex annotation: onset = first frame, apex = middle frame (len(frames) // 2)')
    log.info('MEGC2019: %s', summary(samples))
    return samples


def load_ckplus(root, *, skip_bad=False):
    """CK+ samples (macro, 30 fps) with an emotion label: onset = first frame, apex = last (peak) frame."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f'{root}: {_not_a_folder(root)}; pass the folder holding cohn-kanade-images and Emotion')
    images, emotion = find(root, 'ck_images'), find(root, 'ck_emotion')
    files = sorted(p for p in emotion.glob('*/*/*_emotion.txt')
                   if not any(part.startswith('.') for part in p.relative_to(emotion).parts))
    if not files:
        raise DatasetError(f'{emotion}: no S*/*/*_emotion.txt files; CK+ labels come from the release\'s Emotion '
                           f'folder')
    samples, problems = [], []
    for path in files:
        subject, seq = path.parent.parent.name, path.parent.name
        try:
            try:
                text = path.read_text().strip()
            except UnicodeDecodeError:
                raise DatasetError('not a text file; CK+ emotion files hold one number such as 3.0000000e+00') from None
            try:
                code = float(text)
            except ValueError:
                raise DatasetError(f'cannot read an emotion code from {text[:20]!r}') from None
            if code not in CK_CODES:
                raise DatasetError(f'unknown emotion code {code:g} (expected 1-7: anger, contempt, disgust, fear, '
                                   f'happy, sadness, surprise)')
            frames = list_frames(images / subject / seq)
        except DatasetError as e:
            problems.append(f'{path.relative_to(emotion.parent)}: {e}')
            continue
        samples.append(Sample('ck+', subject, f'{subject}_{seq}', frames, 0, len(frames) - 1,
                              CK_CODES[int(code)], FPS['ck+'], 'macro'))
    _settle(problems, emotion.name, 'sequence', skip_bad)
    log.info('CK+: %s', summary(samples))
    return samples


INDEX_COLUMNS = ('dataset', 'subject', 'clip', 'frames_dir', 'onset', 'apex', 'label')


def load_index(csv_path, *, strict=False, skip_bad=False):
    """Samples, in file order, from a csv of your own clips (columns in the module docstring)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f'{csv_path}: ' + ('a folder, not an index file; pass the csv that lists your clips (its '
                                              'columns: docs/data.md)' if csv_path.is_dir() else 'index file not found'))
    rows = _read_csv(csv_path)
    header = [h.strip().lower() for h in rows[0]] if rows else []
    missing = [c for c in INDEX_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f'{csv_path.name}: the header lacks {", ".join(missing)}; the first row must name the '
                           f'columns {",".join(INDEX_COLUMNS)}[,fps][,domain]')
    if len(rows) < 2:
        raise DatasetError(f'{csv_path}: no rows below the header; write one row per clip')
    samples, problems, quirks, seen, names = [], [], [], {}, {}
    for n, fields in enumerate(rows[1:], 2):
        where = f'{csv_path.name}:{n}'
        if not any(f.strip() for f in fields):
            problems.append(f'{where}: blank row')
            continue
        if len(fields) != len(header):
            problems.append(f'{where}: {len(fields)} fields, the header has {len(header)}')
            continue
        r = dict(zip(header, (f.strip() for f in fields)))
        where += f' {r["dataset"]} {r["subject"]} {r["clip"]}'
        key = r['dataset'], one_name(r['dataset'], r['subject'], index_subject(r['dataset'], r['subject'], names),
                                     csv_path.name), r['clip']
        try:
            empty = [c for c in INDEX_COLUMNS if not r[c]]
            if empty:
                raise DatasetError(f'empty {", ".join(empty)}')
            if key in seen:
                raise DatasetError(f'duplicate of row {seen[key]}')
            seen[key] = n
            label = _label(r['label'])
            frames = list_frames(csv_path.parent / r['frames_dir'])
            i, j, notes = locate(frames, _int(r['onset'], 'onset'), _int(r['apex'], 'apex'), strict)
            try:
                fps = float(r.get('fps') or FPS.get(r['dataset'], DEFAULT_FPS))
            except ValueError:
                raise DatasetError(f'fps is {r["fps"]!r}, not a number') from None
            domain = r.get('domain') or ('macro' if r['dataset'] == 'ck+' else 'micro')
            if domain not in ('micro', 'macro'):
                raise DatasetError(f'domain is {domain!r}, expected micro or macro')
        except DatasetError as e:
            problems.append(f'{where}: {e}')
            continue
        quirks += [f'{key[0]} {key[2]} {note}' for note in notes]
        samples.append(Sample(*key, frames, i, j, label, fps, domain))
    _settle(problems, csv_path.name, 'row', skip_bad)
    _warn_nearest(quirks)
    log.info('%s: %s', csv_path.name, summary(samples))
    return samples


def summary(samples):
    """One line: sample and subject counts, and per dataset its size and negative/positive/surprise counts."""
    parts = []
    for ds in dict.fromkeys(s.dataset for s in samples):
        labels = [s.label for s in samples if s.dataset == ds]
        parts.append(f'{ds} {len(labels)} ({"/".join(str(labels.count(k)) for k in range(3))})')
    subjects = len({(s.dataset, s.subject) for s in samples})
    return f'{len(samples)} samples, {subjects} subjects: {", ".join(parts)} (negative/positive/surprise)'
