"""Results to files: what `mer.py predict` and `mer.py spot` print, written with --out FILE as CSV or JSON lines
(by the name's extension), with what made them (the command, the code, the model and its provenance, the spotter's
settings).

    CSV          a few lines '# key: JSON value' of what made the file, then a header and one row per result
                 (pandas.read_csv(f, comment='#') reads it; `read` below gives both parts back)
    JSON lines   {"meta": {...}} first, then one object per result

The whole file is rewritten through a temporary file after every video (and, from a live source, after every
interval): a stop at any moment leaves the previous file or the new one, never half of one.
"""
import csv
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from data.releases import DatasetError
from util.files import atomic_write, code_version

SUFFIXES = ('.csv', '.jsonl', '.ndjson')


def out_path(name, flag='--out'):
    """--out as a Path (None when not given), checked before any work: a known suffix, an existing folder."""
    if not name:
        return None
    p = Path(name)
    if p.suffix.lower() not in SUFFIXES:
        raise DatasetError(f'{flag} {p}: give a .csv or .jsonl file name (the extension picks the format)')
    if not p.parent.is_dir():
        raise DatasetError(f'{flag} {p}: the folder {p.parent} does not exist')
    check_writable(p, flag)
    return p


def check_writable(p, flag):
    """A DatasetError naming the flag unless a file can be written beside p (as atomic_write writes it) and p
    itself, where it exists, can be replaced: found before any work, not after it."""
    p = Path(p)
    if p.is_dir():
        raise DatasetError(f'{flag} {p}: is a folder; give a file name')
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{p.name}.', suffix='.check', dir=p.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise DatasetError(f'{flag} {p}: the folder {p.parent} cannot be written ({e.strerror}); give a file in a '
                           'folder you can write') from None


def meta(command, model=None, record=None, settings=None):
    """What made a file: the command line, the code version, the date, the model file and its provenance, and the
    settings that decided the results."""
    out = dict(command=' '.join(['mer.py', *command]), code_version=code_version(),
               written=time.strftime('%Y-%m-%dT%H:%M:%S%z'), python=sys.version.split()[0])
    if model is not None:
        out['model'] = str(model)
        out['model_code_version'] = record.get('code_version')
        out['model_provenance'] = record.get('provenance') or dict(trained_on=record.get('trained_on'))
        out['model_settings'] = record.get('settings')
    if settings is not None:
        out['settings'] = settings
    return out


def write(path, rows, columns, info):
    """Writes the rows (dicts; `columns` their order, keys a row lacks left empty) and `info` to path, atomically."""
    path = Path(path)
    if path.suffix.lower() == '.csv':
        buf = io.StringIO()
        for k, v in info.items():
            buf.write(f'# {k}: {json.dumps(v)}\n')
        w = csv.DictWriter(buf, columns, extrasaction='ignore', lineterminator='\n')
        w.writeheader()
        w.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
        text = buf.getvalue()
    else:
        text = ''.join(json.dumps(x) + '\n' for x in [dict(meta=info)] + [{k: r[k] for k in columns if k in r}
                                                                            for r in rows])
    atomic_write(path, text)


def _cell(v):
    return f'{v:.6g}' if isinstance(v, float) else v


def read(path):
    """(info, rows) of a file `write` wrote; numbers come back as numbers; anything else is a DatasetError naming
    the file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f'{path}: no such file; give the --out files the runs wrote')
    text = path.read_text()
    try:
        if path.suffix.lower() == '.csv':
            info, body = {}, []
            for line in text.splitlines(keepends=True):
                if line.startswith('# ') and not body:
                    k, _, v = line[2:].partition(': ')
                    info[k] = json.loads(v)
                else:
                    body.append(line)
            rows = [{k: _number(v) for k, v in r.items() if v != ''} for r in csv.DictReader(body)]
        else:
            lines = [json.loads(x) for x in text.splitlines() if x.strip()]
            info, rows = lines[0]['meta'], lines[1:]
    except (ValueError, KeyError, IndexError) as e:
        raise DatasetError(f'{path}: not a results file written by mer.py --out ({type(e).__name__}); give the '
                           'files the runs wrote') from None
    return info, rows


def _number(v):
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return v
