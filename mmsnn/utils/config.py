"""Reading a user's config: the file, ``--cfg-options``, and the sections a run needs.

``load_config`` is ``Config.fromfile`` + ``--cfg-options`` with the known failures (a missing
file, a custom import that fails, a bad option) turned into one-line user errors. The other
checks look at the loaded config before the runner is built. :func:`set_data_root`
re-points a loaded config at another dataset root (what ``--cfg-options data_root=...`` alone
cannot do, because mmengine resolves ``data_root`` into the dataloader dicts when the config
file is parsed).
"""
import difflib
import linecache
import os
import os.path as osp
import re
import traceback

from .errors import MMSNNUserError


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


def load_config(path, cfg_options=None):
    """``Config.fromfile`` + ``--cfg-options``, with parse and import errors as user errors."""
    from mmengine.config import Config
    check_config_file(path)
    try:
        cfg = Config.fromfile(path)
    except MMSNNUserError:  # e.g. a _base_ of mmsnn.configs.path() naming no config
        raise
    except ImportError as e:
        if 'Failed to import custom modules' not in str(e):
            raise MMSNNUserError(_real_config_error(path, e)) from None
        cause = e.__cause__ or e
        raise MMSNNUserError(
            f'config {path!r} imports custom modules (custom_imports) and one cannot be '
            f'imported: {type(cause).__name__}: {str(cause).splitlines()[0]}\n'
            '  fix: install that module, or run from the repository root / add its folder to '
            'PYTHONPATH.') from None
    except FileNotFoundError as e:  # a _base_ file that is not there
        raise MMSNNUserError(
            f'config {path!r} could not be read: {e}\n'
            '  fix: correct the _base_ path (relative to the config\'s folder).') from None
    except Exception as e:  # noqa: BLE001 - shown as Python shows it, with file and line
        raise MMSNNUserError(_real_config_error(path, e)) from None
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
            set_data_root(cfg, cfg_options['data_root'])
    return cfg


def _config_frame(exc):
    """(file, line) of the innermost traceback frame that runs a config file, or None."""
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if name.endswith(('.py', '.json', '.yaml', '.yml')) and osp.isfile(name) \
                and not _is_library_file(name):
            found = (name, frame.lineno)
    return found


_PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _is_library_file(name):
    """A frame of python's, a toolbox's or mmsnn's own code, not of the user's config."""
    name = osp.abspath(name)
    parts = name.split(os.sep)
    return 'site-packages' in parts or 'dist-packages' in parts or \
        name.startswith(_PACKAGE_DIR + os.sep)


def _syntax_error_in(path, seen):
    """The ``SyntaxError`` (with file and line) of ``path`` or of a local ``_base_`` file it
    inherits, or None."""
    from mmengine.config import Config
    seen.add(osp.abspath(path))
    try:
        with open(path, encoding='utf-8') as f:
            compile(f.read(), path, 'exec')
    except SyntaxError as e:
        return e
    except OSError:
        return None
    try:
        bases = Config._get_base_files(path)
    except Exception:  # noqa: BLE001 - only a hint for the message
        return None
    for base in bases:
        if '::' in base:  # a package's config (mmdet::...): not the user's file
            continue
        full = base if osp.isabs(base) else osp.join(osp.dirname(path), base)
        if osp.isfile(full) and osp.abspath(full) not in seen:
            found = _syntax_error_in(full, seen)
            if found is not None:
                return found
    return None


def _real_config_error(path, exc):
    """The error as Python reports it, with the config file and line where it happened.

    mmengine re-raises a config's syntax error without its line number ("There are syntax
    errors in config file X: ..."): the file it names is compiled again here to get the
    real ``SyntaxError``.
    """
    if isinstance(exc, SyntaxError):
        match = re.search(r'syntax errors in config file (.+?): ', str(exc))
        exc = _syntax_error_in(match.group(1) if match else path, set()) or exc
        text = ''.join(traceback.format_exception_only(type(exc), exc)).rstrip()
    else:
        text = ''.join(traceback.format_exception_only(type(exc), exc)).rstrip()
        frame = _config_frame(exc)
        if frame is not None:
            line = linecache.getline(frame[0], frame[1]).strip()
            text = f'  File "{frame[0]}", line {frame[1]}\n    {line}\n{text}'
    return (f'config {path!r} could not be read:\n{text}\n'
            '  fix: correct the config at that line (or the _base_ file named there).')


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


def _dataset_dicts(ds):
    """The innermost dataset dicts of a (possibly wrapped / concatenated) dataset config."""
    if ds is None:
        return []
    if 'datasets' in ds:
        return [d for sub in ds['datasets'] for d in _dataset_dicts(sub)]
    if 'dataset' in ds:
        return _dataset_dicts(ds['dataset'])
    return [ds]


def set_data_root(cfg, data_root=None):
    """Point every dataloader and evaluator of a loaded mmdet ``cfg`` at ``data_root``.

    mmengine substitutes ``data_root`` into the dataloader / evaluator dicts while it parses
    the config file, so ``--cfg-options data_root=X`` alone changes only the top-level
    variable. Call this after ``cfg.merge_from_dict(cfg_options)`` (``data_root=None`` uses
    ``cfg.data_root``): it sets ``data_root`` of every ``{train,val,test}_dataloader``
    dataset (through dataset wrappers) and rewrites evaluator ``ann_file`` paths that start
    with the old root. Returns ``cfg``.
    """
    data_root = cfg.get('data_root') if data_root is None else data_root
    if data_root is None:
        return cfg
    old_roots = set()
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            continue
        for ds in _dataset_dicts(loader.get('dataset')):
            if ds.get('data_root'):
                old_roots.add(ds['data_root'])
            ds['data_root'] = data_root
    old_roots.discard(data_root)
    for split in ('val', 'test'):
        evaluators = cfg.get(f'{split}_evaluator')
        if not evaluators:
            continue
        for ev in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
            ann = ev.get('ann_file')
            for old in sorted(old_roots, key=len, reverse=True):
                if isinstance(ann, str) and ann.startswith(old):
                    ev['ann_file'] = osp.join(data_root, ann[len(old):].lstrip('/'))
                    break
    cfg.data_root = data_root
    return cfg
