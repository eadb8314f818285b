"""The shape docs/design.md describes: the method's files flat at the repository's root, importing nothing of the
folders beside them (the machinery calls the method, never the other way round); no import cycle anywhere; the
training path importable where cv2, dlib and openpyxl are not (a GPU machine's)."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The folders of the machinery: every folder of the repository that is a package.
PACKAGES = sorted(p.parent.name for p in ROOT.glob('*/__init__.py'))
# mer.py is the entry point: it chains the method and the machinery, so it is neither.
METHOD = sorted(p for p in ROOT.glob('*.py') if p.name != 'mer.py')


def modules():
    """{dotted module name: path} of every module of the project (the root's files and the packages')."""
    out = {p.stem: p for p in ROOT.glob('*.py')}
    for pkg in PACKAGES:
        out.update({f'{pkg}.{p.stem}': p for p in (ROOT / pkg).glob('*.py') if p.stem != '__init__'})
    return out


def imported(path, known):
    """The project's modules that a file imports, anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from engine import graphs` imports engine.graphs; `from data.frames import read_frames` data.frames.
            names = [f'{node.module}.{a.name}' for a in node.names] + [node.module]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def test_the_method_is_flat_at_the_root_and_the_machinery_in_folders():
    assert {'mer.py', 'config.py', 'align.py', 'emr.py', 'evm.py', 'flow.py', 'pipeline.py', 'model.py', 'train.py',
            'loso.py'} <= {p.name for p in ROOT.glob('*.py')}
    assert PACKAGES and not {'runs', 'mer'} & set(PACKAGES)     # the output folder's name, and mer.py's
    assert len(list(ROOT.glob('*.py'))) <= 12, 'the root holds the paper\'s scripts: at most 12 files'


def test_the_method_imports_nothing_of_the_machinery():
    known = modules()
    wrong = {p.name: sorted(m for m in imported(p, known) if m.split('.')[0] in PACKAGES) for p in METHOD}
    assert not {k: v for k, v in wrong.items() if v}, f'method files that import the machinery: {wrong}'


# The folders' floors: a module may import the method (the root), its own folder and folders on lower floors,
# never a folder above it. util/ is the leaf every folder may use; mer.py and the tests stand above them all.
FLOORS = {'util': 0, 'data': 1, 'results': 2, 'engine': 3, 'video': 4, 'tools': 5}


def upward(graph, floors):
    """[(module, imported module)] of every import in `graph` {module: imported modules} from a folder to a folder on
    a higher floor (the root's modules have no dot and sit below every folder)."""
    def floor(m):
        return floors[m.split('.')[0]] if '.' in m else -1
    return sorted((m, i) for m, imports in graph.items() if '.' in m for i in imports if floor(i) > floor(m))


def test_every_folder_imports_only_its_own_floor_and_below():
    assert set(FLOORS) == set(PACKAGES), 'give every folder its floor in FLOORS'
    known = modules()
    graph = {name: imported(path, known) for name, path in known.items() if name != 'mer'}
    wrong = upward(graph, FLOORS)
    assert not wrong, f'imports from a folder to a folder above it: {wrong}'
    assert upward({'results.report': {'util.files', 'engine.files', 'loso'}, 'loso': set()}, FLOORS) == [
        ('results.report', 'engine.files')]                                                  # the check finds one


def cycles(graph):
    """Every strongly connected group of more than one module (or a module importing itself): the cycles."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):            # Tarjan's algorithm
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in graph[v]:
                out.append(sorted(group))
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    known = modules()
    graph = {name: imported(path, known) - {name.split('.')[0]} for name, path in known.items()}
    assert cycles(graph) == []
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': set()}) == [['a', 'b', 'c']]   # the check finds one


def test_the_training_path_imports_neither_cv2_dlib_nor_openpyxl():
    # What a GPU machine without them runs: training, checkpoints, the run folder and the protocol benchmark.
    code = ('import sys\n'
            'for name in ("cv2", "dlib", "openpyxl", "sklearn"):\n'
            '    sys.modules[name] = None\n'
            'import train, loso, model, config\n'
            'from engine import graphs, runfolder, checkpoint\n'
            'from results import report, stats\n'
            'import tools.bench\n'
            'sys.path.insert(0, "tests")\n'
            'import test_train, test_checkpoint\n')       # what .ci/gpu runs
    subprocess.run([sys.executable, '-c', code], cwd=ROOT, check=True)
