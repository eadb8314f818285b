"""Files written safely and code identified: the atomic write every output goes through, the code version that
config.json and model.pt record, and the digest of source that keys the feature cache."""
import ast
import hashlib
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]      # the repository: the method's files, the folders beside them


def atomic_write(path, data):
    """Writes text or bytes to `path` through a temporary file beside it: readers see the whole file or none."""
    path = Path(path)
    tmp = path.with_name(f'.{path.name}.tmp{os.getpid()}')
    try:
        (tmp.write_text if isinstance(data, str) else tmp.write_bytes)(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def source_digest(modules):
    """sha1 of what the named modules (file paths from the repository's root) compute: their syntax trees without docstrings,
    so an edited comment or docstring keeps the digest and an edited expression changes it."""
    h = hashlib.sha1()
    for name in modules:
        tree = ast.parse((ROOT / name).read_text())
        for node in ast.walk(tree):
            body = getattr(node, 'body', None)
            if (isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body
                    and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
        h.update(name.encode() + b'\0' + ast.dump(tree).encode() + b'\0')
    return h.hexdigest()


def code_version():
    """`git describe` of the checkout when it is clean, else a hash of the project's source files."""
    if (ROOT / 'pyproject.toml').is_file():         # a checkout (or `pip install -e .` of one)
        sources = sorted(ROOT.glob('*.py')) + sorted(p for p in ROOT.glob('*/*.py')
                                                     if (p.parent / '__init__.py').is_file())
    else:                                           # `pip install .`: ROOT is site-packages, the files its record's
        from importlib import metadata
        try:
            sources = sorted(Path(f.locate()) for f in metadata.files('neural-mer') or () if f.suffix == '.py')
        except metadata.PackageNotFoundError:
            sources = []
    digest = hashlib.sha1(b''.join(p.read_bytes() for p in sources)).hexdigest()[:12]
    try:
        desc = subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=ROOT, capture_output=True,
                              text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        desc = ''
    return desc if desc and not desc.endswith('-dirty') else f'src-{digest}'


def lock(path, wait=False):
    """An open file holding an exclusive flock on `path` (created if need be; closing it, or the process's end,
    releases it), or None when another process holds it and `wait` is False. Where flock does not work (no fcntl on
    Windows; ENOLCK and the like on a file system without locks) the file comes back unlocked: lock_problem says so
    once, at the start of a run, rather than every claim failing."""
    fh = open(path, 'a')
    try:
        import fcntl
        fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        fh.close()
        return None
    except (ImportError, OSError):
        pass
    return fh


def lock_problem(folder):
    """'' when file locks work in `folder`, else what goes wrong (ENOLCK: 'No locks available' on an NFS mount
    without its lock service): a flock tried on a test file there, removed after."""
    path = Path(folder) / f'.lockcheck{os.getpid()}'
    try:
        import fcntl
        with open(path, 'a') as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return ''
    except ImportError:
        return 'this system has no fcntl.flock'
    except OSError as e:
        return f'flock: {e.strerror or e}'
    finally:
        path.unlink(missing_ok=True)
