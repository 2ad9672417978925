"""The package's layering: no import cycle inside mmsnn, ``mmsnn.utils`` imports nothing else
of mmsnn, the package uses no deprecated path of its own, and ``import mmsnn`` runs no script.

How the import graph is built (statically, without importing anything): every ``.py`` file
under ``mmsnn/`` is parsed with :mod:`ast`, and every ``import`` / ``from ... import``
statement in it -- at module level or inside a function, since a lazy import is a dependency
too -- becomes an edge from that module to the mmsnn module it names (``from pkg import name``
points at ``pkg.name`` where that is a module, else at ``pkg``; relative imports are resolved
against the importing module). Importing a module also runs the ``__init__`` of each package
above it that is not already running (not an ancestor of the importer, and not ``mmsnn``
itself, which imports everything): those packages get an edge as well. Deprecated aliases are
left out, because they are leaves that only users reach: a module that calls ``warn_moved``
at module level (an old path re-exporting the new one), and the imports inside a module-level
``__getattr__`` (PEP 562: an old name resolved on use). A depth-first search then looks for a
cycle.
"""
import ast
import os
import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE = osp.join(REPO, 'mmsnn')


def _modules():
    """{dotted name: (path, is_package)} of every module under mmsnn/."""
    found = {}
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if not f.endswith('.py'):
                continue
            parts = osp.relpath(osp.join(root, f), REPO)[:-3].split(os.sep)
            is_pkg = parts[-1] == '__init__'
            found['.'.join(parts[:-1] if is_pkg else parts)] = (osp.join(root, f), is_pkg)
    return found


def _is_alias_module(tree):
    """An old path kept for a release: calls ``warn_moved(...)`` at module level."""
    return any(isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
               and getattr(node.value.func, 'id', None) == 'warn_moved' for node in tree.body)


def _is_main_block(node):
    """``if __name__ == '__main__':`` -- runs only when the module is the program
    (``python -m``), never on import, so it cannot close an import cycle."""
    test = getattr(node, 'test', None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare)
            and getattr(test.left, 'id', None) == '__name__'
            and any(getattr(c, 'value', None) == '__main__' for c in test.comparators))


def _imports(tree):
    """Import statements of ``tree`` outside a module-level ``__getattr__`` and outside the
    ``__main__`` block."""
    skip = set()
    for node in tree.body:
        if (isinstance(node, ast.FunctionDef) and node.name == '__getattr__') \
                or _is_main_block(node):
            skip.update(id(n) for n in ast.walk(node))
    return [n for n in ast.walk(tree)
            if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in skip]


def _from_base(name, is_pkg, node):
    """The absolute module that a ``from ... import`` statement of module ``name`` names
    (relative imports resolved against ``name``)."""
    if not node.level:
        return node.module or ''
    base = name.split('.') if is_pkg else name.split('.')[:-1]
    base = base[:len(base) - (node.level - 1)]
    return '.'.join(base + ([node.module] if node.module else []))


def _targets(name, is_pkg, node, modules):
    """The mmsnn modules an import statement of module ``name`` names."""
    if isinstance(node, ast.Import):
        bases = [a.name for a in node.names]
        names = []
    else:
        bases = [_from_base(name, is_pkg, node)]
        names = [a.name for a in node.names]
    out = set()
    for base in bases:
        if not base.startswith('mmsnn'):
            continue
        subs = [f'{base}.{n}' for n in names if f'{base}.{n}' in modules]
        out.update(subs)
        if len(subs) < len(names) or not names:
            out.add(base)
    return {t for t in out if t in modules}


def import_graph():
    """(edges {module: set of modules}, alias modules) of the mmsnn package."""
    modules = _modules()
    edges, aliases = {}, set()
    for name, (path, is_pkg) in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        if _is_alias_module(tree):
            aliases.add(name)
            edges[name] = set()
            continue
        running = {'.'.join(name.split('.')[:i]) for i in range(1, name.count('.') + 2)}
        deps = set()
        for node in _imports(tree):
            for target in _targets(name, is_pkg, node, modules):
                parts = target.split('.')
                packages = {'.'.join(parts[:i]) for i in range(2, len(parts))}
                deps.add(target)
                deps.update(p for p in packages if p not in running and p in modules)
        deps.discard(name)
        deps.discard('mmsnn')
        edges[name] = deps
    return edges, aliases


def _find_cycle(edges):
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_import_graph_is_read():
    """The graph sees the imports the tests below rely on (a walker that found nothing would
    pass them all)."""
    edges, aliases = import_graph()
    assert 'mmsnn.utils.errors' in edges['mmsnn.registry']
    assert 'mmsnn.ops.lean_ilif' in edges['mmsnn.models.neurons']
    assert 'mmsnn.ops' in edges['mmsnn.models.neurons']  # the package __init__ runs too
    assert 'mmsnn.engine.hooks' in edges['mmsnn.engine']
    assert {'mmsnn.models.fusion', 'mmsnn.utils.allocator'} <= aliases
    assert _find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']


def test_no_import_cycle_inside_mmsnn():
    edges, _ = import_graph()
    assert _find_cycle(edges) is None, ' -> '.join(_find_cycle(edges))


def test_utils_imports_nothing_above_it():
    """``mmsnn.utils`` is the bottom layer: it imports no other part of mmsnn (models, ops,
    deploy, engine, datasets, analysis, the registry)."""
    edges, _ = import_graph()
    above = {(name, dep) for name, deps in edges.items() if name.startswith('mmsnn.utils')
             for dep in deps if not dep.startswith('mmsnn.utils')}
    assert not above, sorted(above)


def test_package_uses_no_deprecated_path():
    """No mmsnn module imports an old path kept for users (the aliases are leaves)."""
    edges, aliases = import_graph()
    users = {(name, dep) for name, deps in edges.items() for dep in deps & aliases}
    assert not users, sorted(users)


def _dotted(node):
    """``a.b.c`` of an attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return '.'.join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else None


def deprecated_name_uses():
    """(module, 'package:old name') for every use of a moved name in the package: imported by
    ``from package import old`` (relative or absolute, at any depth: a lazy import inside a
    function counts) or written out as ``mmsnn.package.old``."""
    modules = _modules()
    old = {key.replace(':', '.'): key for key in MOVED_NAMES}
    found = set()
    for name, (path, is_pkg) in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        if _is_alias_module(tree):
            continue
        for node in _imports(tree):
            if isinstance(node, ast.ImportFrom):
                base = _from_base(name, is_pkg, node)
                found.update((name, old[f'{base}.{a.name}']) for a in node.names
                             if f'{base}.{a.name}' in old)
        skip = {id(n) for node in tree.body if isinstance(node, ast.FunctionDef)
                and node.name == '__getattr__' for n in ast.walk(node)}
        found.update((name, old[d]) for n in ast.walk(tree) if id(n) not in skip
                     for d in [_dotted(n)] if d in old)
    return found


def test_package_uses_no_deprecated_name():
    """No mmsnn module uses a moved or renamed name (``from mmsnn.models import
    fuse_for_inference`` inside a function slipped past the module check above once)."""
    assert not deprecated_name_uses(), sorted(deprecated_name_uses())


def test_deprecated_name_check_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The check finds a lazy relative import and a written-out use of an old name."""
    pkg = tmp_path / 'mmsnn'
    (pkg / 'analysis').mkdir(parents=True)
    (pkg / '__init__.py').write_text('')
    (pkg / 'models.py').write_text('')
    (pkg / 'analysis' / '__init__.py').write_text('')
    (pkg / 'analysis' / 'lazy.py').write_text(
        'def f():\n    from ..models import fuse_for_inference\n    return 1\n')
    (pkg / 'analysis' / 'spelled.py').write_text(
        'import mmsnn\n\ndef g(m):\n    return mmsnn.models.fuse_for_inference(m)\n')
    monkeypatch.setattr(sys.modules[__name__], 'PACKAGE', str(pkg))
    monkeypatch.setattr(sys.modules[__name__], 'REPO', str(tmp_path))
    assert deprecated_name_uses() == {
        ('mmsnn.analysis.lazy', 'mmsnn.models:fuse_for_inference'),
        ('mmsnn.analysis.spelled', 'mmsnn.models:fuse_for_inference')}


#: ``import mmsnn`` and the packages a user imports by hand next
IMPORTED_BY_USERS = ('mmsnn', 'mmsnn.analysis', 'mmsnn.analysis.energy', 'mmsnn.engine.hooks',
                     'mmsnn.analysis.erf_models', 'mmsnn.analysis.erf_compare',
                     'mmsnn.analysis.test_metrics', 'mmsnn.analysis.benchmark.cost_of_spiking',
                     'mmsnn.analysis.benchmark.fast_path', 'mmsnn.analysis.spike_agreement')


def test_import_mmsnn_imports_no_script(tmp_path, run_tool):
    """``import mmsnn`` (and its analysis and engine packages) loads no module from tools/
    (scripts are not library), in an interpreter that had imported no mmsnn module."""
    script = tmp_path / 'imports.py'
    script.write_text(
        'import importlib, os, sys\n'
        'assert not [n for n in sys.modules if n.startswith("mmsnn")]\n'
        f'for name in {IMPORTED_BY_USERS!r}:\n'
        '    importlib.import_module(name)\n'
        'tools = os.sep + "tools" + os.sep  # a checkout\'s tools/ or a wheel\'s .mim/tools/\n'
        'print([n for n, m in list(sys.modules.items()) '
        'if tools in os.path.abspath(getattr(m, "__file__", None) or "")])\n')
    out = run_tool(str(script))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == '[]'


#: moved modules: old path -> new path (the old path is the new module, with a warning)
MOVED_MODULES = {
    'mmsnn.models.winograd': 'mmsnn.ops.winograd',
    'mmsnn.models.fast_roi_align': 'mmsnn.ops.roi_align',
    'mmsnn.models.fast_seg_postprocess': 'mmsnn.deploy.seg_postprocess',
    'mmsnn.utils.allocator': 'mmsnn.deploy.allocator',
    'mmsnn.models.checkpoint': 'mmsnn.models.reference_conversion',
    'mmsnn.utils.checkpoint': 'mmsnn.utils.checkpoint_io',
}
#: moved or renamed names: 'module:old name' -> 'module:new name'
MOVED_NAMES = {
    'mmsnn.models:fuse_for_inference': 'mmsnn.deploy:convert_for_inference',
    'mmsnn.models.fusion:fuse_for_inference': 'mmsnn.deploy:convert_for_inference',
    'mmsnn.utils:keep_freed_memory': 'mmsnn.deploy:keep_freed_memory',
    'mmsnn.utils.runtime:CPUAmpOptimWrapper': 'mmsnn.engine:CPUAmpOptimWrapper',
    'mmsnn.utils.runtime:CPUDistributedDataParallel': 'mmsnn.engine:CPUDistributedDataParallel',
}

_ALIAS_CHECK = r'''
import importlib, json, sys, warnings
import mmsnn
moved_modules, moved_names = json.loads(sys.argv[1]), json.loads(sys.argv[2])
out = {}

def warned(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        value = fn()
    return value, [str(w.message) for w in caught if w.category is DeprecationWarning]

for old, new in moved_modules.items():
    assert old not in sys.modules, old + ' was imported by import mmsnn'
    module, first = warned(lambda: importlib.import_module(old))
    _, again = warned(lambda: importlib.import_module(old))
    out[old] = [module is importlib.import_module(new), first, again]
for old, new in moved_names.items():
    (om, on), (nm, nn) = old.split(':'), new.split(':')
    value, first = warned(lambda: getattr(importlib.import_module(om), on))
    _, again = warned(lambda: getattr(importlib.import_module(om), on))
    out[old] = [value is getattr(importlib.import_module(nm), nn), first, again]
print(json.dumps(out))
'''


def test_old_paths_are_the_new_objects_and_warn_once(tmp_path, run_tool):
    """Every moved module and name still works from its old path for one release: the old
    path gives the very object of the new one, with one ``DeprecationWarning`` naming the new
    path, and no second warning (in an interpreter that had imported no mmsnn module)."""
    import json
    script = tmp_path / 'aliases.py'
    script.write_text(_ALIAS_CHECK)
    run = run_tool(str(script), json.dumps(MOVED_MODULES), json.dumps(MOVED_NAMES))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for old, new in {**MOVED_MODULES, **MOVED_NAMES}.items():
        same, first, again = result[old]
        assert same, f'{old} is not {new}'
        new_path = new.replace(':', '.').rsplit('.', 1)[0] if ':' in new else new
        assert len(first) == 1 and new_path in first[0], (old, first)
        assert again == [], (old, again)


def test_package_runs_no_script():
    """No module of the package runs or loads a file of ``tools/`` (``runpy`` or
    ``importlib`` by path): the scripts are launchers over the package, never the reverse."""
    offenders = []
    for name, (path, _) in _modules().items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in (
                    'run_path', 'spec_from_file_location'):
                offenders.append(f'{name}: {node.attr}')
    assert not offenders, offenders
