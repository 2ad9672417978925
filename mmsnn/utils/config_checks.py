"""Checks of a user's input that ``tools/train.py`` and ``tools/test.py`` run before any work.

Each check is a plain function that raises :class:`MMSNNUserError` with one message naming
the problem and the fix; the tools print it as ``error: ...`` and exit with status 2 (no
traceback). The checks only read: nothing here creates, moves or deletes a user's files.

Only the standard library is imported at module level, so the cheap checks (a missing
config file) answer before torch is imported.
"""
import difflib
import glob
import os
import os.path as osp
import re
import tempfile

#: layouts named in the "data not found" message, keyed by a word of the dataset type:
#: (name, layout, generator of the demo data, demo configs)
DATA_LAYOUTS = {
    'coco': ('COCO', """\
    data/coco/
      annotations/instances_train2017.json
      annotations/instances_val2017.json
      train2017/   (images)
      val2017/     (images)""", 'python -m mmsnn.datasets.demo_coco --out data/demo_coco',
             'configs/det/demo/'),
    'ade20k': ('ADE20K', """\
    data/ade/ADEChallengeData2016/
      images/training/         images/validation/
      annotations/training/    annotations/validation/""",
            'python -m mmsnn.datasets.demo_ade --out data/demo_ade', 'configs/seg/demo/'),
}

_REMOTE = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*://')
_REGISTRY_MISS = re.compile(r"'?([\w.\-]+) is not in the (?:(\w+)::)?(\w+) registry")


class MMSNNUserError(Exception):
    """Bad input from the user (config, paths, checkpoints); the message names the fix."""


# --------------------------------------------------------------------------------- files

def check_config_file(path):
    """The config given on the command line exists and is a file mmengine can read."""
    if not osp.exists(path):
        hint = ''
        folder = osp.dirname(path) or '.'
        if osp.isdir(folder):
            near = difflib.get_close_matches(osp.basename(path), os.listdir(folder), n=3)
            if near:
                hint = f' Similar files in {folder}/: {", ".join(near)}.'
        raise MMSNNUserError(
            f'config file {path!r} does not exist.{hint}\n'
            '  fix: pass the path of a config, e.g. configs/det/<name>.py or '
            'configs/seg/<name>.py (relative to where you run the tool).')
    if osp.isdir(path):
        raise MMSNNUserError(f'config {path!r} is a directory; pass the .py config file in it.')
    if osp.splitext(path)[1] not in ('.py', '.json', '.yaml', '.yml'):
        raise MMSNNUserError(f'config {path!r} is not a .py/.json/.yaml config file.')


def check_checkpoint_file(path, what='checkpoint'):
    """A local checkpoint path exists (URLs are left to mmengine)."""
    if path is None or _REMOTE.match(str(path)):
        return
    if not osp.isfile(path):
        kind = 'a directory' if osp.isdir(path) else 'not there'
        raise MMSNNUserError(
            f'{what} {path!r} is {kind}.\n'
            '  fix: pass the path of a .pth file written by tools/train.py '
            '(e.g. work_dirs/<config>/iter_N.pth or epoch_N.pth).')


def check_out_file(path, overwrite=False):
    """``tools/test.py --out FILE``: a pickle path that would not replace earlier results."""
    if not str(path).endswith(('.pkl', '.pickle')):
        raise MMSNNUserError(
            f'--out {path!r}: predictions are dumped as a pickle.\n'
            '  fix: give a file name ending in .pkl, e.g. --out results.pkl')
    if osp.isdir(path):
        raise MMSNNUserError(f'--out {path!r} is a directory.\n'
                             '  fix: give a file name ending in .pkl inside it.')
    if osp.exists(path) and not overwrite:
        raise MMSNNUserError(
            f'--out {path!r} already exists; it may hold earlier results.\n'
            '  fix: choose another file name, or pass --overwrite to replace it.')
    check_writable_dir(osp.dirname(osp.abspath(path)), what='the folder of --out', flag='--out')


def check_writable_dir(path, what='work dir', flag='--work-dir'):
    """``path`` is (or can be created as) a directory this process can write to.

    Nothing is created: an existing folder is probed with a temporary file that is removed
    at once; for a missing one, the nearest existing parent must be a writable folder.
    """
    path = osp.abspath(path)
    fix = (f'  fix: pass a folder you can write to with {flag}, or change the permissions '
           'of the existing one.')
    if osp.exists(path):
        if not osp.isdir(path):
            raise MMSNNUserError(
                f'{what} {path!r} cannot be used: a file of that name is in the way.\n'
                f'  fix: pass another {flag}, or move the file away.')
        try:
            fd, probe = tempfile.mkstemp(prefix='.mmsnn_write_test_', dir=path)
            os.close(fd)
            os.remove(probe)
        except OSError as e:
            raise MMSNNUserError(
                f'{what} {path!r} is not writable ({e.strerror or e}).\n{fix}') from None
        return
    parent = path
    while not osp.exists(parent):
        up = osp.dirname(parent)
        if up == parent:
            break
        parent = up
    if not osp.isdir(parent):
        raise MMSNNUserError(
            f'{what} {path!r} cannot be created: {parent!r} is a file, not a folder.\n'
            f'  fix: pass another {flag}, or move the file away.')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MMSNNUserError(
            f'{what} {path!r} cannot be created: no write permission in {parent!r}.\n{fix}')


def existing_checkpoints(work_dir):
    """Checkpoint files (``*.pth``) and ``last_checkpoint`` directly in ``work_dir``."""
    if not osp.isdir(work_dir):
        return []
    found = sorted((osp.basename(p) for p in glob.glob(osp.join(work_dir, '*.pth'))),
                   key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', n)])
    if osp.exists(osp.join(work_dir, 'last_checkpoint')):
        found.append('last_checkpoint')
    return found


def check_no_checkpoints_overwritten(work_dir, resume=False, overwrite=False):
    """Training into a work dir that holds an earlier run's checkpoints needs consent."""
    if resume or overwrite:
        return
    found = existing_checkpoints(work_dir)
    if found:
        shown = ', '.join(found[:6]) + (f', ... ({len(found)} files)' if len(found) > 6 else '')
        raise MMSNNUserError(
            f'work dir {work_dir!r} already holds checkpoints of an earlier run ({shown}); '
            'training there would overwrite them.\n'
            '  fix: continue that run with --resume, train into another folder with '
            '--work-dir DIR, or pass --overwrite to replace them.')


def resolve_auto_resume(work_dir):
    """The checkpoint ``--resume`` (auto) continues from, or None when there is nothing.

    Reads ``last_checkpoint`` like mmengine does, but also finds the checkpoint when the work
    dir was moved (``last_checkpoint`` holds an absolute path), and refuses to silently start
    from scratch over checkpoints that ``last_checkpoint`` does not name.
    """
    marker = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(marker):
        with open(marker) as f:
            target = f.read().strip()
        # a work dir that was moved or copied: its own copy of the named checkpoint
        local = osp.join(work_dir, osp.basename(target)) if target else ''
        if local and osp.isfile(local):
            return local
        if target and osp.isfile(target):
            return target
        raise MMSNNUserError(
            f'--resume: {marker!r} names {target!r}, which does not exist.\n'
            '  fix: pass the checkpoint to continue from explicitly: --resume PATH.pth')
    found = [p for p in existing_checkpoints(work_dir) if p.endswith('.pth')]
    if found:
        raise MMSNNUserError(
            f'--resume: {work_dir!r} has checkpoints ({", ".join(found[:6])}) but no '
            'last_checkpoint file saying which one is the latest.\n'
            f'  fix: name it: --resume {osp.join(work_dir, found[-1])}')
    return None


# ---------------------------------------------------------------------------------- data

def _iter_datasets(ds, key):
    """(config key, dataset dict) for ``ds`` and every dataset nested in wrappers."""
    if not isinstance(ds, dict):
        return
    yield key, ds
    inner = ds.get('dataset')
    if isinstance(inner, dict):
        yield from _iter_datasets(inner, f'{key}.dataset')
    inners = ds.get('datasets')
    if isinstance(inners, (list, tuple)):
        for i, d in enumerate(inners):
            yield from _iter_datasets(d, f'{key}.datasets.{i}')


def _join(root, path):
    if not root or osp.isabs(path):
        return path
    return osp.join(root, path)


def _layout_for(types):
    text = ' '.join(t.lower() for t in types)
    for word, layout in DATA_LAYOUTS.items():
        if word in text:
            return layout
    return None


def missing_data_paths(cfg, loaders=('train', 'val', 'test')):
    """[(config key, path, 'folder'|'file', dataset type)] for data that is not on disk."""
    missing = []
    for split in loaders:
        loader = cfg.get(f'{split}_dataloader')
        if isinstance(loader, dict):
            for key, ds in _iter_datasets(loader.get('dataset'), f'{split}_dataloader.dataset'):
                dtype = str(ds.get('type', '?'))
                root = ds.get('data_root') or ''
                if root and not _REMOTE.match(str(root)) and not osp.isdir(root):
                    missing.append((f'{key}.data_root', root, 'folder', dtype))
                    continue  # everything below lives in the missing root
                ann = ds.get('ann_file') or ''
                if isinstance(ann, str) and ann and not _REMOTE.match(ann):
                    full = _join(root, ann)
                    if not osp.isfile(full):
                        missing.append((f'{key}.ann_file', full, 'file', dtype))
                prefix = ds.get('data_prefix') or {}
                if isinstance(prefix, str):
                    prefix = {'': prefix}
                if isinstance(prefix, dict):
                    for name, sub in prefix.items():
                        if isinstance(sub, str) and sub and not _REMOTE.match(sub):
                            full = _join(root, sub)
                            if not osp.exists(full):
                                missing.append((f'{key}.data_prefix.{name}'.rstrip('.'), full,
                                                'folder', dtype))
        evaluator = cfg.get(f'{split}_evaluator')
        metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
        for i, metric in enumerate(metrics):
            if isinstance(metric, dict):
                ann = metric.get('ann_file')
                if isinstance(ann, str) and ann and not _REMOTE.match(ann) \
                        and not osp.isfile(ann):
                    key = f'{split}_evaluator' + (f'.{i}' if len(metrics) > 1 else '')
                    missing.append((f'{key}.ann_file', ann, 'file', str(metric.get('type'))))
    return missing


def check_data_paths(cfg, loaders=('train', 'val', 'test')):
    """Every data root, annotation file and image folder the dataloaders need exists."""
    missing = missing_data_paths(cfg, loaders)
    if not missing:
        return
    lines = [f'the dataset files are not where the config expects them '
             f'(relative paths are taken from {os.getcwd()!r}):']
    by_path = {}
    for key, path, kind, _ in missing:  # a path shared by several loaders is named once
        by_path.setdefault((path, kind), []).append(key)
    for (path, kind), keys in by_path.items():
        lines.append(f'    {", ".join(keys)}: {kind} {path!r} does not exist')
    layout = _layout_for([m[3] for m in missing])
    roots = [m for m in missing if m[0].endswith('.data_root')]
    demo = bool(layout and roots and all('demo' in str(m[1]) for m in roots))
    if layout:
        tree = layout[1]
        if demo:  # the generated data has the layout under its own root
            first = tree.splitlines()[0]
            tree = tree.replace(first.strip(), str(roots[0][1]).rstrip('/') + '/', 1)
        lines.append(f'  expected {layout[0]} layout:\n{tree}')
    else:
        lines.append('  expected: each data_root folder holds the ann_file and the '
                     'data_prefix folders named above.')
    if demo:
        root = str(roots[0][1]).rstrip('/')
        generator = layout[2].rsplit(' --out ', 1)[0]
        lines.append(f'  fix: generate the demo data first: {generator} --out {root}')
    else:
        single = ' '.join(f'{key}=...' for key, _, _, _ in missing[:2])
        lines.append('  fix: put the data there (a symlink works: ln -s /your/dataset '
                     'data/...), or point the config at it with --cfg-options '
                     'data_root=/path/to/dataset/ (tools/train.py and tools/test.py re-point '
                     f'every dataloader and evaluator; single entries: {single})')
        if layout:
            lines.append(f'  or try the tools on generated data: {layout[2]}, then use a '
                         f'config in {layout[3]}')
    raise MMSNNUserError('\n'.join(lines))


# ------------------------------------------------------------------------------- config

def check_config_sections(cfg, mode):
    """The config has what ``mode`` ('train' or 'test') needs."""
    if not cfg.get('default_scope'):
        raise MMSNNUserError(
            'the config sets no default_scope, so no mmdet/mmseg/mmsnn module can be found.\n'
            "  fix: add default_scope = 'mmdet' (detection) or 'mmseg' (segmentation) to the "
            'config, or inherit from a config in configs/det or configs/seg.')
    need = {'train': ('model', 'train_dataloader', 'train_cfg', 'optim_wrapper'),
            'test': ('model', 'test_dataloader', 'test_cfg', 'test_evaluator')}[mode]
    absent = [k for k in need if cfg.get(k) is None]
    if absent:
        raise MMSNNUserError(
            f'the config has no {", ".join(absent)}, which {mode}ing needs.\n'
            f'  fix: add {" and ".join(absent)} to the config (see configs/det or configs/seg '
            'for complete examples).')


def check_dataloader_options(cfg, loaders=('train', 'val', 'test')):
    """Dataloader settings torch would reject deep inside ``DataLoader``."""
    for split in loaders:
        loader = cfg.get(f'{split}_dataloader')
        if not isinstance(loader, dict):
            continue
        key = f'{split}_dataloader'
        workers = loader.get('num_workers', 0)
        if not isinstance(workers, int) or workers < 0:
            raise MMSNNUserError(f'{key}.num_workers={workers!r}: it must be an integer >= 0.')
        if loader.get('persistent_workers') and workers == 0:
            raise MMSNNUserError(
                f'{key}.persistent_workers=True needs worker processes, but '
                f'{key}.num_workers=0.\n  fix: also pass --cfg-options '
                f'{key}.persistent_workers=False (or use num_workers > 0).')
        batch = loader.get('batch_size', 1)
        if not isinstance(batch, int) or batch < 1:
            raise MMSNNUserError(f'{key}.batch_size={batch!r}: it must be an integer >= 1.')


def enable_visualization(cfg, show_dir=None, show=False):
    """``--show-dir`` / ``--show``: turn on the scope's visualization hook."""
    hooks = cfg.get('default_hooks') or {}
    vis = hooks.get('visualization')
    if not isinstance(vis, dict):
        raise MMSNNUserError(
            '--show-dir/--show need default_hooks.visualization in the config, and it has '
            'none.\n  fix: add default_hooks = dict(visualization=dict(type='
            "'DetVisualizationHook')) (mmdet) or dict(type='SegVisualizationHook') (mmseg).")
    vis['draw'] = True
    if show:
        vis['show'] = True
    if cfg.get('default_scope') == 'mmseg':
        vis['interval'] = 1
        if show_dir:
            if cfg.get('visualizer') is None:
                cfg.visualizer = dict(type='SegLocalVisualizer')
            cfg.visualizer.save_dir = show_dir
    elif show_dir:
        vis['test_out_dir'] = show_dir


# ---------------------------------------------------------------------------- registry

def _registry(scope, name):
    import importlib
    from mmengine.registry import Registry
    for mod, scope in ((f'{scope}.registry', scope), ('mmengine.registry', 'mmengine')):
        try:
            module = importlib.import_module(mod)
        except ImportError:
            continue
        for obj in vars(module).values():
            if isinstance(obj, Registry) and obj.name == name and obj.scope == scope:
                return obj
    return None


def _registered_names(registry):
    names = set()
    while registry is not None:
        try:
            registry.import_from_location()  # the toolboxes register lazily
        except Exception:  # noqa: BLE001 - suggestions are best effort
            pass
        names.update(registry.module_dict)
        registry = registry.parent
    return names


def explain_registry_error(exc, scope=None):
    """An :class:`MMSNNUserError` for mmengine's "X is not in the Y registry", else None."""
    match = _REGISTRY_MISS.search(str(exc))
    if not match:
        return None
    name, reg_scope, reg_name = match.group(1), match.group(2) or scope, match.group(3)
    from ..registry import MMSNN_MODULES, mmsnn_names
    lines = [f"unknown {reg_name} type {name!r}: the {reg_scope or 'default'} scope's "
             f'{reg_name} registry has no such name.']
    registry = _registry(reg_scope, reg_name) if reg_scope else None
    if registry is not None:
        near = difflib.get_close_matches(name, sorted(_registered_names(registry)), n=3)
        if near:
            lines.append(f'  did you mean: {", ".join(near)}?')
    elsewhere = MMSNN_MODULES.get(reg_name, {}).get(name)
    if elsewhere and reg_scope not in elsewhere:
        lines.append(f'  {name!r} is an mmsnn module for {"/".join(elsewhere)} only, but this '
                     f"config runs in {reg_scope!r} (default_scope).")
    kind = reg_name if reg_name in MMSNN_MODULES else None
    if kind:
        names = mmsnn_names(kind, reg_scope if reg_scope in ('mmdet', 'mmseg') else None)
        lines.append(f'  mmsnn {kind} types in {reg_scope}: {", ".join(names) or "(none)"}')
    lines.append("  fix: correct the type name; if it is an mmsnn module, make sure the config "
                 "imports mmsnn: custom_imports = dict(imports=['mmsnn'], "
                 'allow_failed_imports=False)')
    return MMSNNUserError('\n'.join(lines))


# -------------------------------------------------------------------------- checkpoints

def load_checkpoint_safely(path):
    """Load a local checkpoint with torch's safe loader; unreadable files are user errors."""
    from .checkpoint import load_checkpoint_file
    try:
        return load_checkpoint_file(path)
    except (FileNotFoundError, RuntimeError) as e:
        raise MMSNNUserError(str(e)) from None


def checkpoint_mismatch(model, checkpoint):
    """(missing, unexpected, wrong_shape) keys of ``checkpoint`` against ``model``."""
    sd = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    sd = {(k[7:] if k.startswith('module.') else k): v for k, v in sd.items()}
    own = model.state_dict()
    missing = sorted(k for k in own if k not in sd)
    unexpected = sorted(k for k in sd if k not in own)
    wrong = sorted(f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                   for k, v in sd.items()
                   if k in own and hasattr(v, 'shape') and tuple(v.shape) != tuple(own[k].shape))
    return missing, unexpected, wrong


def _listing(title, keys, limit=8):
    if not keys:
        return []
    lines = [f'    {title} ({len(keys)}):'] + [f'      {k}' for k in keys[:limit]]
    if len(keys) > limit:
        lines.append(f'      ... and {len(keys) - limit} more')
    return lines


def check_checkpoint_fits(model, path, purpose='load_from'):
    """The checkpoint at ``path`` has exactly the model's keys and shapes.

    ``purpose`` is 'test', 'resume' or 'load_from' (for the message). A resumed checkpoint
    must also hold the training state mmengine writes (``meta``, ``message_hub``). Returns
    the loaded checkpoint.
    """
    if path is None or _REMOTE.match(str(path)):
        return None
    check_checkpoint_file(path, {'test': 'checkpoint', 'resume': '--resume checkpoint',
                                 'load_from': 'load_from checkpoint'}.get(purpose, 'checkpoint'))
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):
        model = model.module
    ckpt = load_checkpoint_safely(path)
    if not isinstance(ckpt, dict):
        raise MMSNNUserError(f'{path!r} holds a {type(ckpt).__name__}, not a checkpoint dict '
                             '(state_dict of tensors).')
    missing, unexpected, wrong = checkpoint_mismatch(model, ckpt)
    if missing or unexpected or wrong:
        lines = [f'checkpoint {path!r} does not fit the model {type(model).__name__} of this '
                 'config:']
        lines += _listing('wrongly shaped', wrong)
        lines += _listing('missing in the checkpoint', missing)
        lines += _listing('unexpected in the checkpoint', unexpected)
        lines.append('  fix: use the checkpoint trained with this config (same model, '
                     'num_classes, embed_dims/arch), or the config it was trained with.')
        if purpose == 'load_from':
            lines.append('  To start from part of the weights (e.g. a pretrained backbone), '
                         "set model.backbone.init_cfg=dict(type='Pretrained', checkpoint=PATH) "
                         'instead of load_from; it loads what fits and names the rest.')
        raise MMSNNUserError('\n'.join(lines))
    if purpose == 'resume':
        absent = [k for k in ('meta', 'message_hub') if k not in ckpt]
        if absent or not isinstance(ckpt.get('meta'), dict) or 'iter' not in ckpt['meta']:
            raise MMSNNUserError(
                f'--resume {path!r}: the file holds weights only, not a training state '
                f'(no {", ".join(absent) or "meta.iter"}), so training cannot continue from it.\n'
                f'  fix: start a new run from its weights with --cfg-options load_from={path} '
                '(without --resume).')
    return ckpt


# -------------------------------------------------------------------------------- tools

def load_config(path, cfg_options=None):
    """``Config.fromfile`` + ``--cfg-options``, with parse and import errors as user errors."""
    from mmengine.config import Config
    check_config_file(path)
    try:
        cfg = Config.fromfile(path)
    except ImportError as e:
        cause = e.__cause__ or e
        raise MMSNNUserError(
            f'config {path!r} imports custom modules (custom_imports) and one cannot be '
            f'imported: {type(cause).__name__}: {str(cause).splitlines()[0]}\n'
            '  fix: install that module, or run from the repository root / add its folder to '
            'PYTHONPATH.') from None
    except SyntaxError as e:
        raise MMSNNUserError(
            f'config {path!r} is not valid Python: {e.msg} ({e.filename}, line {e.lineno}).\n'
            '  fix: correct that line.') from None
    except Exception as e:  # noqa: BLE001 - any parse failure is a problem of the config
        first = str(e).splitlines()[0] if str(e) else ''
        raise MMSNNUserError(
            f'config {path!r} could not be read: {type(e).__name__}: {first}\n'
            '  fix: correct the config (or the _base_ files it names).') from None
    if cfg_options:
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as e:  # noqa: BLE001
            raise MMSNNUserError(
                f'--cfg-options {cfg_options} cannot be applied: {type(e).__name__}: {e}\n'
                '  fix: use dotted keys of the config, e.g. '
                'train_dataloader.batch_size=2 model.backbone.arch=t') from None
        if 'data_root' in cfg_options:
            # the config's data_root was substituted into its dataloaders at parse time;
            # re-point all of them (and evaluator ann_files under the old root)
            from ..datasets import set_data_root
            set_data_root(cfg, cfg_options['data_root'])
    return cfg


def check_work_dir_keeps_config(work_dir, config):
    """The run dumps its merged config into the work dir; never over the user's config."""
    dumped = osp.join(work_dir, osp.basename(config))
    if osp.exists(dumped) and osp.samefile(dumped, config):
        raise MMSNNUserError(
            f'work dir {work_dir!r} is the folder of the config {config!r}; the run would '
            'overwrite the config with its merged copy.\n'
            '  fix: pass another --work-dir (the default is ./work_dirs/<config name>).')


def cfg_options_action():
    """mmengine's ``DictAction`` that reports a malformed ``k=v`` as an argparse error."""
    import argparse

    from mmengine.config import DictAction

    class CfgOptionsAction(DictAction):
        def __call__(self, parser, namespace, values, option_string=None):
            bad = [v for v in values if '=' not in v or v.startswith('=')]
            if bad:
                parser.error(f'{option_string}: {bad[0]!r} is not KEY=VALUE '
                             '(e.g. train_dataloader.batch_size=2)')
            try:
                super().__call__(parser, namespace, values, option_string)
            except (ValueError, argparse.ArgumentError) as e:
                parser.error(f'{option_string}: {e}')

    return CfgOptionsAction


def fail(message, code=2):
    """Print ``error: message`` to stderr and exit with ``code`` (no traceback).

    Under ``tools/dist_*.sh`` (``MMSNN_ERROR_DIR`` set) every process would print the same
    message; each writes it to ``$MMSNN_ERROR_DIR/rank<R>.txt`` instead and the script
    prints one of them once torchrun has stopped.
    """
    import sys
    text = f'error: {message}\n'
    err_dir = os.environ.get('MMSNN_ERROR_DIR')
    if err_dir and osp.isdir(err_dir):
        rank = os.environ.get('RANK', '0')
        try:
            tmp = osp.join(err_dir, f'.rank{rank}.tmp')
            with open(tmp, 'w') as f:
                f.write(text)
            os.replace(tmp, osp.join(err_dir, f'rank{rank}.txt'))
            raise SystemExit(code)
        except OSError:
            pass  # fall back to printing
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()
    raise SystemExit(code)


def run_tool(fn, *args, **kwargs):
    """Run a tool's body; user errors (ours, and unknown registry types) end in :func:`fail`."""
    try:
        return fn(*args, **kwargs)
    except MMSNNUserError as e:
        fail(str(e))
    except KeyError as e:
        explained = explain_registry_error(e)
        if explained is None:
            raise
        fail(str(explained))
