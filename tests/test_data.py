import csv
import logging
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

from data import releases
from data.releases import DatasetError, frame_number

SHARED = Path(__file__).resolve().parents[2] / 'shared' / 'megc2019'
JPG = cv2.imencode('.jpg', np.zeros((4, 4, 3), np.uint8))[1].tobytes()
BMP = cv2.imencode('.bmp', np.zeros((4, 4, 3), np.uint8))[1].tobytes()
PNG = cv2.imencode('.png', np.zeros((4, 4), np.uint8))[1].tobytes()
SMIC_FOLDER = {'ne': 'negative', 'po': 'positive', 'sur': 'surprise'}
HEAD = 'combined_3class_gt.csv: {} (pass --skip-bad to skip {}):'


def _frames(folder, names, payload=JPG):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(payload)


def _smic_folder(root, clip):
    s, short, k = clip.split('_')
    n = int(s[1:])
    return root / 'SMIC' / 'SMIC_all_raw' / 'HS' / f's{n}' / 'micro' / SMIC_FOLDER[short] / f's{n}_{short}_{k}'


def _sheet_rows(path, sheet, skip):
    ws = openpyxl.load_workbook(path, read_only=True, data_only=True)[sheet]
    return list(ws.iter_rows(min_row=skip + 1, values_only=True))


# ---------------------------------------------------------------- the real annotation files, tiny frames

@pytest.fixture(scope='module')
def real_root(tmp_path_factory):
    if not (SHARED / 'combined_3class_gt.csv').is_file():
        pytest.skip('../shared/megc2019 not found: real MEGC2019 annotation files absent')
    root = tmp_path_factory.mktemp('real') / 'megc'
    (root / 'CASME2').mkdir(parents=True)
    (root / 'SAMM').mkdir()
    (root / 'combined_3class_gt.csv').symlink_to(SHARED / 'combined_3class_gt.csv')
    (root / 'CASME2' / 'CASME2-coding-20140508.xlsx').symlink_to(SHARED / 'CASME2-coding-20140508.xlsx')
    (root / 'SAMM' / 'SAMM_Micro_FACS_Codes_v2.xlsx').symlink_to(SHARED / 'SAMM_Micro_FACS_Codes_v2.xlsx')
    casme = {(f'sub{r[0]}', r[1]): r for r in _sheet_rows(SHARED / 'CASME2-coding-20140508.xlsx', 'Sheet1', 1)}
    samm = {r[1]: r for r in _sheet_rows(SHARED / 'SAMM_Micro_FACS_Codes_v2.xlsx', 'MICRO_ONLY', 14)}
    for dataset, subject, clip, _ in csv.reader(open(SHARED / 'combined_3class_gt.csv', newline='')):
        if dataset == 'casme2':
            on, ap = casme[subject, clip][3:5]
            _frames(root / 'CASME2' / 'CASME2_RAW_selected' / subject / clip,
                    [f'img{n}.jpg' for n in (on - 1, on, ap, ap + 1)])
        elif dataset == 'samm':
            on, ap = samm[clip][3:5]
            # As in the release, these two folders do not hold the annotated apex frame.
            numbers = (on - 1, on, ap - 2) if clip in ('028_4_1', '032_3_1') else (on - 1, on, ap, ap + 1)
            _frames(root / 'SAMM' / f'{int(subject):03d}' / clip, [f'{clip[:3]}_{n:05d}.jpg' for n in numbers])
        else:
            _frames(_smic_folder(root, clip), [f'image{n:06d}.bmp' for n in (7, 8, 9)], BMP)
    return root


@pytest.fixture(scope='module')
def real_samples(real_root):
    return releases.load_megc(real_root)


def test_real_composite_loads_with_the_official_counts(real_root, caplog):
    caplog.set_level(logging.INFO, 'data')
    samples = releases.load_megc(real_root)
    rows = list(csv.reader(open(SHARED / 'combined_3class_gt.csv', newline='')))
    assert [(s.dataset, s.subject, s.clip, s.label) for s in samples] == [(d, s, c, int(y)) for d, s, c, y in rows]
    assert Counter(s.dataset for s in samples) == {'casme2': 145, 'samm': 133, 'smic': 164}
    assert len({(s.dataset, s.subject) for s in samples}) == 68
    for ds, counts in (('casme2', (88, 32, 25)), ('samm', (92, 26, 15)), ('smic', (70, 51, 43))):
        labels = Counter(s.label for s in samples if s.dataset == ds)
        assert tuple(labels[k] for k in range(3)) == counts
    assert releases.summary(samples) == ('442 samples, 68 subjects: casme2 145 (88/32/25), smic 164 (70/51/43), '
                                     'samm 133 (92/26/15) (negative/positive/surprise)')
    assert {(s.dataset, s.fps, s.domain) for s in samples} == {
        ('casme2', 200.0, 'micro'), ('samm', 200.0, 'micro'), ('smic', 100.0, 'micro')}
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos.count('SMIC-HS has no apex annotation: onset = first frame, apex = middle frame '
                       '(len(frames) // 2)') == 1


@pytest.mark.parametrize('dataset,clip,onset,apex', [
    ('casme2', 'EP02_01f', 46, 59), ('casme2', 'EP19_06f', 36, 71), ('casme2', 'EP18_51', 21, 64),
    ('samm', '006_1_2', 5562, 5588), ('samm', '037_3_2', 3196, 3214), ('smic', 's01_ne_01', 7, 8)])
def test_real_onset_and_apex_frames(real_samples, dataset, clip, onset, apex):
    s = next(s for s in real_samples if s.dataset == dataset and s.clip == clip)
    assert (frame_number(s.frames[s.onset]), frame_number(s.frames[s.apex])) == (onset, apex)
    assert s.frames == tuple(sorted(s.frames, key=frame_number))


def test_real_samm_apex_not_on_disk_warns_once_and_strict_refuses(real_root, caplog):
    samples = releases.load_megc(real_root)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["2 annotated frames are not among their clip's files, the nearest frame is used (pass "
                        "--strict to refuse): samm 028_4_1 apex 1113 -> 1111; samm 032_3_1 apex 4930 -> 4928"]
    s = next(s for s in samples if s.clip == '028_4_1')
    assert frame_number(s.frames[s.apex]) == 1111
    with pytest.raises(DatasetError) as e:
        releases.load_megc(real_root, strict=True)
    rows = {r[2]: n for n, r in enumerate(csv.reader(open(SHARED / 'combined_3class_gt.csv', newline='')), 1)}
    assert str(e.value) == '\n  '.join([
        HEAD.format('2 problem rows', 'them'),
        f"combined_3class_gt.csv:{rows['028_4_1']} samm 28 028_4_1: annotated apex frame 1113 is not among the "
        f"clip's frames 1070-1111 (without --strict the nearest frame is used)",
        f"combined_3class_gt.csv:{rows['032_3_1']} samm 32 032_3_1: annotated apex frame 4930 is not among the "
        f"clip's frames 4895-4928 (without --strict the nearest frame is used)"])


# ---------------------------------------------------------------- a tiny generated composite, to break

def _tiny(root, casme_dir='CASME2_RAW_selected', casme_prefix='img', samm_dir='SAMM'):
    """A 6-clip composite in the demo layout: megc/CASME2, megc/SAMM, megc/SMIC/SMIC_all_raw/HS."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = 'Sheet1'
    ws.append(['Subject', 'Filename', None, 'OnsetFrame', 'ApexFrame', 'OffsetFrame', None, 'Action Units',
               'Estimated Emotion'])
    for row in (['01', 'EP02_01f', None, 46, 59, 86, None, 12, 'happiness'],
                ['02', 'EP01_11f', None, 46, 91, 96, None, 15, 'repression'],
                ['04', 'EP12_01f', None, 261, '/', 321, None, 4, 'disgust']):
        ws.append(row)
    (root / 'CASME2').mkdir(parents=True)
    wb.save(root / 'CASME2' / 'CASME2-coding-20140508.xlsx')
    for sub, clip, numbers in (('sub01', 'EP02_01f', range(45, 61)), ('sub02', 'EP01_11f', range(40, 100)),
                               ('sub04', 'EP12_01f', range(261, 270))):
        _frames(root / 'CASME2' / casme_dir / sub / clip, [f'{casme_prefix}{n}.jpg' for n in numbers])
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = 'MICRO_ONLY'
    ws['A1'] = 'SAMM Dataset - Master FACS Codes'
    for c, v in enumerate(['Subject', 'Filename', 'Inducement Code', 'Onset Frame', 'Apex Frame', 'Offset Frame'], 1):
        ws.cell(14, c, v)
    for r, row in enumerate((['006', '006_1_2', 1, 5562, 5588, 5632], ['007', '007_3_1', 3, 100, 110, 120]), 15):
        for c, v in enumerate(row, 1):
            ws.cell(r, c, v)
    (root / 'SAMM').mkdir()
    wb.save(root / 'SAMM' / 'SAMM_Micro_FACS_Codes_v2.xlsx')
    _frames(root / samm_dir / '006' / '006_1_2', [f'006_{n:05d}.jpg' for n in range(5560, 5640, 2)])
    _frames(root / samm_dir / '007' / '007_3_1', [f'007_{n:05d}.jpg' for n in range(95, 125)])
    for clip in ('s01_ne_01', 's02_sur_01'):
        _frames(_smic_folder(root, clip), [f'image{n:06d}.bmp' for n in range(1000, 1011)], BMP)
    rows = [('casme2', 'sub01', 'EP02_01f', 1), ('casme2', 'sub02', 'EP01_11f', 0), ('samm', '6', '006_1_2', 0),
            ('samm', '7', '007_3_1', 2), ('smic', 's01', 's01_ne_01', 0), ('smic', 's02', 's02_sur_01', 2)]
    _write_csv(root, [','.join(map(str, r)) for r in rows])
    return root


def _write_csv(root, lines):
    (root / 'combined_3class_gt.csv').write_bytes(''.join(line + '\r\n' for line in lines).encode())


def _add_rows(root, *lines):
    _write_csv(root, (root / 'combined_3class_gt.csv').read_text().splitlines() + list(lines))


@pytest.fixture
def tiny(tmp_path):
    return _tiny(tmp_path / 'megc')


def test_tiny_composite_in_the_demo_layout(tiny):
    samples = releases.load_megc(tiny)
    assert [(s.clip, s.label, frame_number(s.frames[s.onset]), frame_number(s.frames[s.apex]), s.fps)
            for s in samples] == [('EP02_01f', 1, 46, 59, 200.0), ('EP01_11f', 0, 46, 91, 200.0),
                                  ('006_1_2', 0, 5562, 5588, 200.0), ('007_3_1', 2, 100, 110, 200.0),
                                  ('s01_ne_01', 0, 1000, 1005, 100.0), ('s02_sur_01', 2, 1000, 1005, 100.0)]
    assert samples[0].frames[0] == str(tiny / 'CASME2' / 'CASME2_RAW_selected' / 'sub01' / 'EP02_01f' / 'img45.jpg')
    assert (samples[4].onset, samples[4].apex, len(samples[4].frames)) == (0, 5, 11)


def test_cropped_casme_and_lowercase_samm_folders(tmp_path):
    root = _tiny(tmp_path / 'megc', casme_dir='Cropped', casme_prefix='reg_img', samm_dir='samm')
    samples = releases.load_megc(tmp_path)      # found two levels down
    assert samples[0].frames[samples[0].onset].endswith('Cropped/sub01/EP02_01f/reg_img46.jpg')
    assert samples[2].frames[0] == str(root / 'samm' / '006' / '006_1_2' / '006_05560.jpg')


def test_raw_frames_win_over_cropped(tiny):
    shutil.copytree(tiny / 'SMIC' / 'SMIC_all_raw', tiny / 'SMIC' / 'SMIC_all_cropped')
    shutil.copytree(tiny / 'CASME2' / 'CASME2_RAW_selected', tiny / 'CASME2' / 'Cropped')
    assert releases.find(tiny, 'smic_frames') == tiny / 'SMIC' / 'SMIC_all_raw' / 'HS'
    assert releases.find(tiny, 'casme2_frames') == tiny / 'CASME2' / 'CASME2_RAW_selected'


def test_missing_sheet_names_what_was_searched_where(tiny):
    (tiny / 'SAMM' / 'SAMM_Micro_FACS_Codes_v2.xlsx').unlink()
    with pytest.raises(DatasetError) as e:
        releases.load_megc(tiny)
    assert str(e.value) == (f'SAMM coding sheet not found: no SAMM_Micro_FACS_Codes_v2.xlsx (or '
                            f'samm_micro_facs_codes*.xlsx) within 4 levels under {tiny}; unpack the release there '
                            f'or pass the folder that holds it')


def test_a_subject_padded_otherwise_than_its_folder_is_matched_and_logged(tiny, caplog):
    caplog.set_level(logging.INFO, 'data')
    casme = tiny / 'CASME2' / 'CASME2_RAW_selected'
    (casme / 'sub01').rename(casme / 'sub1')                    # the release's folder unpadded, the csv's sub01
    (tiny / 'SAMM' / '006').rename(tiny / 'SAMM' / '6')           # SAMM's 006 unpadded
    samples = releases.load_megc(tiny)
    assert samples[0].frames[0] == str(casme / 'sub1' / 'EP02_01f' / 'img45.jpg')
    assert samples[2].frames[0] == str(tiny / 'SAMM' / '6' / '006_1_2' / '006_05560.jpg')
    assert 'subject sub01 is folder sub1' in caplog.text and 'subject 006 is folder 6' in caplog.text
    (casme / 'sub1').rename(casme / 'sub001')                     # two candidates: neither is taken
    shutil.copytree(casme / 'sub001', casme / 'sub0001')
    assert releases.subject_folder(casme, 'sub01') == casme / 'sub01'


def test_a_file_where_a_folder_is_expected_and_the_reverse_are_named_as_such(tiny, tmp_path):
    csv_file = tiny / 'combined_3class_gt.csv'
    with pytest.raises(DatasetError, match=r'combined_3class_gt.csv: a file, not a folder; pass the folder'):
        releases.load_megc(csv_file)
    with pytest.raises(DatasetError, match=r'combined_3class_gt.csv: a file, not a folder; pass the folder'):
        releases.load_ckplus(csv_file)
    with pytest.raises(DatasetError, match=rf'{tiny}: a folder, not an index file; pass the csv'):
        releases.load_index(tiny)


def test_missing_root_and_missing_frames_folder(tiny, tmp_path):
    with pytest.raises(DatasetError, match=r'nowhere: folder not found; pass the folder holding '):
        releases.load_megc(tmp_path / 'nowhere')
    shutil.rmtree(tiny / 'SMIC')
    with pytest.raises(DatasetError) as e:
        releases.load_megc(tiny)
    assert str(e.value).startswith('SMIC-HS frames not found: no HS within 4 levels under ')


def test_unreadable_sheet(tiny):
    sheet = tiny / 'CASME2' / 'CASME2-coding-20140508.xlsx'
    sheet.write_bytes(b'not a workbook')
    with pytest.raises(DatasetError) as e:
        releases.load_megc(tiny)
    assert str(e.value) == (f'{sheet}: cannot read the workbook (BadZipFile: File is not a zip file); replace it '
                            f'with the file from the release')


def test_every_problem_row_is_listed_in_one_error(tiny):
    shutil.rmtree(tiny / 'CASME2' / 'CASME2_RAW_selected' / 'sub02' / 'EP01_11f')
    for f in (tiny / 'SAMM' / '007' / '007_3_1').iterdir():
        f.unlink()
    _add_rows(tiny, 'casme2,sub01,EP02_01f,3', '', 'samm,6,006_1_2,0', 'casme2,sub01,EP99_01,1',
              'casme2,sub04,EP12_01f,0', 'smic,s01,s01_ne_01,2', 'casme3,sub01,EP01,0', 'samm,6,006_1_2')
    with pytest.raises(DatasetError) as e:
        releases.load_megc(tiny)
    casme = tiny / 'CASME2' / 'CASME2_RAW_selected'
    assert str(e.value) == '\n  '.join([
        HEAD.format('10 problem rows', 'them'),
        f'combined_3class_gt.csv:2 casme2 sub02 EP01_11f: clip folder {casme / "sub02" / "EP01_11f"} not found',
        f'combined_3class_gt.csv:4 samm 7 007_3_1: no numbered image frames in {tiny / "SAMM" / "007" / "007_3_1"}',
        'combined_3class_gt.csv:7 casme2 sub01 EP02_01f: duplicate of row 1',
        'combined_3class_gt.csv:8: blank row',
        'combined_3class_gt.csv:9 samm 6 006_1_2: duplicate of row 3',
        f'combined_3class_gt.csv:10 casme2 sub01 EP99_01: clip folder {casme / "sub01" / "EP99_01"} not found',
        "combined_3class_gt.csv:11 casme2 sub04 EP12_01f: CASME2-coding-20140508.xlsx row 4 apexframe is '/', "
        "not a frame number",
        'combined_3class_gt.csv:12 smic s01 s01_ne_01: duplicate of row 5',
        "combined_3class_gt.csv:13 casme3 sub01 EP01: unknown dataset 'casme3' (expected casme2, samm or smic)",
        "combined_3class_gt.csv:14: 3 fields 'samm,6,006_1_2', expected dataset,subject,filename,label"])


def test_label_and_sheet_row_problems(tiny):
    _write_csv(tiny, ['casme2,sub01,EP02_01f,3', 'casme2,sub03,EP02_01f,0', 'smic,s01,s01_ne_01,1',
                      'samm,6,006_1_2,0', 'samm,7,007_3_1,2', 'smic,s02,s01_ne_01,0'])
    _frames(tiny / 'CASME2' / 'CASME2_RAW_selected' / 'sub03' / 'EP02_01f', ['img1.jpg'])
    sheet = tiny / 'SAMM' / 'SAMM_Micro_FACS_Codes_v2.xlsx'
    wb = openpyxl.load_workbook(sheet)
    wb['MICRO_ONLY'].append(['007', '007_3_1', 3, 101, 110, 120])
    wb.save(sheet)
    with pytest.raises(DatasetError) as e:
        releases.load_megc(tiny)
    assert str(e.value) == '\n  '.join([
        HEAD.format('5 problem rows', 'them'),
        "combined_3class_gt.csv:1 casme2 sub01 EP02_01f: unknown label '3' (expected 0 negative, 1 positive, "
        "2 surprise)",
        'combined_3class_gt.csv:2 casme2 sub03 EP02_01f: no rows for subject 3 EP02_01f in '
        'CASME2-coding-20140508.xlsx',
        'combined_3class_gt.csv:3 smic s01 s01_ne_01: csv label 1 (positive) but the clip folder is under negative',
        'combined_3class_gt.csv:5 samm 7 007_3_1: 2 rows for subject 7 007_3_1 in SAMM_Micro_FACS_Codes_v2.xlsx '
        '(rows 16, 17)',
        'combined_3class_gt.csv:6 smic s02 s01_ne_01: clip s01_ne_01 does not belong to subject s02'])


def test_skip_bad_skips_and_lists_the_rows(tiny, caplog):
    shutil.rmtree(tiny / 'CASME2' / 'CASME2_RAW_selected' / 'sub02' / 'EP01_11f')
    _add_rows(tiny, '', 'smic,s02,s02_sur_01,x')
    samples = releases.load_megc(tiny, skip_bad=True)
    assert [s.clip for s in samples] == ['EP02_01f', '006_1_2', '007_3_1', 's01_ne_01', 's02_sur_01']
    folder = tiny / 'CASME2' / 'CASME2_RAW_selected' / 'sub02' / 'EP01_11f'
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == ['\n  '.join([
        'combined_3class_gt.csv: 3 problem rows skipped:',
        f'combined_3class_gt.csv:2 casme2 sub02 EP01_11f: clip folder {folder} not found',
        'combined_3class_gt.csv:7: blank row',
        "combined_3class_gt.csv:8 smic s02 s02_sur_01: duplicate of row 6"])]


def test_annotated_frame_missing_takes_the_nearest_or_fails_when_strict(tiny, caplog):
    (tiny / 'SAMM' / '006' / '006_1_2' / '006_05562.jpg').unlink()
    (tiny / 'CASME2' / 'CASME2_RAW_selected' / 'sub01' / 'EP02_01f' / 'img59.jpg').unlink()
    samples = releases.load_megc(tiny)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "2 annotated frames are not among their clip's files, the nearest frame is used (pass --strict to "
        "refuse): casme2 EP02_01f apex 59 -> 58; samm 006_1_2 onset 5562 -> 5560"]
    assert frame_number(samples[0].frames[samples[0].apex]) == 58
    assert (samples[2].onset, frame_number(samples[2].frames[samples[2].apex])) == (0, 5588)
    with pytest.raises(DatasetError) as e:
        releases.load_megc(tiny, strict=True)
    assert str(e.value) == '\n  '.join([
        HEAD.format('2 problem rows', 'them'),
        "combined_3class_gt.csv:1 casme2 sub01 EP02_01f: annotated apex frame 59 is not among the clip's frames "
        "45-60 (without --strict the nearest frame is used)",
        "combined_3class_gt.csv:3 samm 6 006_1_2: annotated onset frame 5562 is not among the clip's frames "
        "5560-5638 (without --strict the nearest frame is used)"])


def test_apex_before_onset_is_a_problem_row(tiny):
    ws_path = tiny / 'SAMM' / 'SAMM_Micro_FACS_Codes_v2.xlsx'
    wb = openpyxl.load_workbook(ws_path)
    wb['MICRO_ONLY']['E16'] = 99
    wb.save(ws_path)
    with pytest.raises(DatasetError) as e:
        releases.load_megc(tiny)
    assert str(e.value) == '\n  '.join([HEAD.format('1 problem row', 'it'),
                                        'combined_3class_gt.csv:4 samm 7 007_3_1: apex frame 99 precedes onset '
                                        'frame 100'])


def test_demo_set_from_synth_loads(demo_root):
    megc, ck = releases.load_megc(demo_root / 'megc'), releases.load_ckplus(demo_root / 'ck')
    assert Counter(s.dataset for s in megc) == {'casme2': 6, 'samm': 6, 'smic': 6}
    assert all(0 <= s.onset < s.apex < len(s.frames) for s in megc + ck)
    assert len(ck) == 6 and {s.domain for s in ck} == {'macro'}


# ---------------------------------------------------------------- CK+

def _ck(root, codes):
    """One sequence per code (S005/001, S005/002, ...); None writes the images without an emotion file."""
    for k, code in enumerate(codes, 1):
        seq = f'{k:03d}'
        names = [f'S005_{seq}_{n:08d}.png' for n in range(1, 5 + k)]
        _frames(root / 'cohn-kanade-images' / 'S005' / seq, names, PNG)
        if code is not None:
            emo = root / 'Emotion' / 'S005' / seq / f'S005_{seq}_{4 + k:08d}_emotion.txt'
            emo.parent.mkdir(parents=True)
            emo.write_text(f'   {code:.7e}\n')
    return root


def test_ckplus_maps_all_seven_codes_and_ignores_unlabelled(tmp_path):
    samples = releases.load_ckplus(_ck(tmp_path / 'ck', [1, 2, 3, 4, 5, 6, 7, None]))
    # anger, contempt, disgust, fear -> negative; happy -> positive; sadness -> negative; surprise -> surprise
    assert [s.label for s in samples] == [0, 0, 0, 0, 1, 0, 2]
    s = samples[0]
    assert (s.dataset, s.subject, s.clip, s.onset, s.apex, s.fps, s.domain) == (
        'ck+', 'S005', 'S005_001', 0, 4, 30.0, 'macro')
    assert s.frames[-1] == str(tmp_path / 'ck' / 'cohn-kanade-images' / 'S005' / '001' / 'S005_001_00000005.png')


def test_ckplus_problems(tmp_path):
    root = _ck(tmp_path / 'ck', [0, 5, 7])
    shutil.rmtree(root / 'cohn-kanade-images' / 'S005' / '003')
    with pytest.raises(DatasetError) as e:
        releases.load_ckplus(root)
    assert str(e.value) == '\n  '.join([
        'Emotion: 2 problem sequences (pass --skip-bad to skip them):',
        'Emotion/S005/001/S005_001_00000005_emotion.txt: unknown emotion code 0 (expected 1-7: anger, contempt, '
        'disgust, fear, happy, sadness, surprise)',
        f'Emotion/S005/003/S005_003_00000007_emotion.txt: clip folder '
        f'{root / "cohn-kanade-images" / "S005" / "003"} not found'])
    assert [s.clip for s in releases.load_ckplus(root, skip_bad=True)] == ['S005_002']
    shutil.rmtree(root / 'Emotion')
    with pytest.raises(DatasetError, match=r'^CK\+ emotion labels not found: no Emotion within 4'):
        releases.load_ckplus(root)


def test_ckplus_emotion_file_with_binary_bytes_is_a_problem_row(tmp_path):
    root = _ck(tmp_path / 'ck', [5, 7])
    bad = root / 'Emotion' / 'S005' / '001' / 'S005_001_00000005_emotion.txt'
    bad.write_bytes(b'\xff\xfe\x00\x81binary')
    with pytest.raises(DatasetError, match=r'Emotion/S005/001/S005_001_00000005_emotion.txt: not a text file'):
        releases.load_ckplus(root)
    assert [s.clip for s in releases.load_ckplus(root, skip_bad=True)] == ['S005_002']


def test_trailing_blank_lines_of_the_composite_are_ignored(tiny):
    _add_rows(tiny, '', '  ', '')
    assert len(releases.load_megc(tiny)) == 6
    (tiny / 'combined_3class_gt.csv').unlink()
    with pytest.raises(DatasetError, match=r'no combined_3class_gt.csv within 4 levels'):
        releases.load_megc(tiny)


# ---------------------------------------------------------------- load_index

def test_index_round_trip(tiny, tmp_path):
    samples = releases.load_megc(tiny) + releases.load_ckplus(_ck(tmp_path / 'ck', [5, 6]))
    lines = ['dataset,subject,clip,frames_dir,onset,apex,label,fps,domain']
    for k, s in enumerate(samples):
        folder = Path(s.frames[0]).parent.relative_to(tmp_path)
        label = releases.CLASSES[s.label] if k % 2 else s.label
        fps, domain = ('', '') if k % 3 else (s.fps, s.domain)
        lines.append(f'{s.dataset},{s.subject},{s.clip},{folder},{frame_number(s.frames[s.onset])},'
                     f'{frame_number(s.frames[s.apex])},{label},{fps},{domain}')
    (tmp_path / 'index.csv').write_text('\n'.join(lines) + '\n')
    assert releases.load_index(tmp_path / 'index.csv') == samples


def test_index_problems(tiny, tmp_path):
    index = tmp_path / 'index.csv'
    index.write_text('dataset,subject,clip,onset,apex,label\n')
    with pytest.raises(DatasetError) as e:
        releases.load_index(index)
    assert str(e.value) == ('index.csv: the header lacks frames_dir; the first row must name the columns '
                            'dataset,subject,clip,frames_dir,onset,apex,label[,fps][,domain]')
    index.write_text('dataset,subject,clip,frames_dir,onset,apex,label,domain\n'
                     'casme2,sub01,a,megc/CASME2/CASME2_RAW_selected/sub01/EP02_01f,46,59,happy,\n'
                     'casme2,sub01,b,megc/CASME2/CASME2_RAW_selected/sub01/EP02_01f,46,x,0,\n'
                     'casme2,sub01,c,megc/CASME2/CASME2_RAW_selected/sub01/EP02_01f,46,59,0,mezzo\n'
                     ',,,,,,,\n'
                     'casme2,sub01,d,megc/CASME2/CASME2_RAW_selected/sub01/EP02_01f,46,59,0,\n')
    with pytest.raises(DatasetError) as e:
        releases.load_index(index)
    assert str(e.value) == '\n  '.join([
        'index.csv: 4 problem rows (pass --skip-bad to skip them):',
        "index.csv:2 casme2 sub01 a: unknown label 'happy' (expected 0 negative, 1 positive, 2 surprise)",
        "index.csv:3 casme2 sub01 b: apex is 'x', not a frame number",
        "index.csv:4 casme2 sub01 c: domain is 'mezzo', expected micro or macro",
        'index.csv:5: blank row'])
    assert [s.clip for s in releases.load_index(index, skip_bad=True)] == ['d']


def test_hidden_files_among_frames_and_emotion_files_are_ignored(tmp_path):
    # A copy made on a Mac: '._' resource forks beside each file, numbered like the real ones and sorting first.
    root = _ck(tmp_path / 'ck', [5])
    seq = root / 'cohn-kanade-images' / 'S005' / '001'
    real = releases.list_frames(seq)
    for f in list(seq.iterdir()):
        (seq / f'._{f.name}').write_bytes(b'\x00\x05\x16\x07 Mac OS X resource fork')
    emo = next((root / 'Emotion' / 'S005' / '001').iterdir())
    (emo.parent / f'._{emo.name}').write_bytes(b'\x00\x05\x16\x07 Mac OS X resource fork')
    assert releases.list_frames(seq) == real
    samples = releases.load_ckplus(root)
    assert len(samples) == 1 and samples[0].frames == real and samples[0].label == 1
