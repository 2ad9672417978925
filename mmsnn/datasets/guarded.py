"""A dataset wrapper that turns a sample whose files are bad into one clear line, or skips it.

A missing, corrupt or cut-short image (or a bad annotation) otherwise stops training with a
decoder traceback at whatever iteration meets it. :class:`GuardedDataset` catches the
failure, asks :func:`~mmsnn.datasets.checks.sample_problems` what is wrong with the
sample's files, and then either stops with an :class:`MMSNNUserError` naming the file and
the fix (default) or, with ``skip_bad_samples=True``, warns with the file name and loads
another index. A failure whose files check out is a bug, not bad data: it is raised as is.

``tools/train.py`` wraps the training dataset in it (``--cfg-options
train_dataloader.dataset.skip_bad_samples=True`` turns skipping on); with mmdet's / mmseg's
own tools write the wrapper in the config::

    train_dataloader = dict(dataset=dict(type='GuardedDataset', skip_bad_samples=True,
                                         dataset=dict(type='CocoDataset', ...)))
"""
import logging

from mmengine.logging import print_log

from ..registry import register
from ..utils.errors import MMSNNUserError
from .checks import sample_problems

#: the config key that ``tools/train.py`` moves from the training dataset to the wrapper
SKIP_KEY = 'skip_bad_samples'


@register('dataset')
class GuardedDataset:
    """``dataset`` (a config dict or a dataset), whose bad samples stop the run with one
    line or, with ``skip_bad_samples=True``, are skipped with a warning naming them.

    A skipped sample is replaced by the next index; more than ``max_skips`` bad samples in a
    row (the dataset is mostly bad, or a path setting is wrong) stop the run.
    """

    def __init__(self, dataset, skip_bad_samples=False, max_skips=100, lazy_init=False):
        if isinstance(dataset, dict):
            from mmengine.registry import DATASETS
            dataset = DATASETS.build(dataset)
        self.dataset = dataset
        self.skip_bad_samples = skip_bad_samples
        self.max_skips = max_skips
        self._warned = set()
        if not lazy_init and hasattr(dataset, 'full_init'):
            dataset.full_init()

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):
        # metainfo, get_data_info, full_init, ... of the wrapped dataset (samplers and the
        # runner use them); private names and ``dataset`` itself are not forwarded, so an
        # object being unpickled (``dataset`` not set yet) does not recurse
        if name.startswith('_') or name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def _bad_sample(self, idx, exc):
        """What is wrong with sample ``idx``'s files (one line), or None (they are fine)."""
        get_info = getattr(self.dataset, 'get_data_info', None)
        if get_info is None:
            return None
        try:
            info = get_info(idx)
        except Exception:  # noqa: BLE001 - the annotation itself cannot be read
            return f'sample {idx}: its annotation cannot be read ({type(exc).__name__}: {exc})'
        problems = sample_problems(info, decode=True)
        return '; '.join(str(p) for p in problems) if problems else None

    def __getitem__(self, idx):
        first = idx
        for skipped in range(self.max_skips + 1):
            try:
                return self.dataset[idx]
            except Exception as exc:  # noqa: BLE001 - decided below: bad data or a bug
                problem = self._bad_sample(idx, exc)
                if problem is None:
                    raise
            if not self.skip_bad_samples:
                raise MMSNNUserError(
                    f'bad sample: {problem}\n'
                    '  fix: repair or remove it (tools/misc/check_dataset.py CONFIG lists every '
                    'bad file; tools/train.py --check-data stops before training), or skip bad '
                    'samples: --cfg-options train_dataloader.dataset.skip_bad_samples=True')
            if problem not in self._warned:
                self._warned.add(problem)
                print_log(f'skipping bad sample: {problem}', logger='current',
                          level=logging.WARNING)
            idx = (idx + 1) % len(self.dataset)
        raise MMSNNUserError(
            f'{self.max_skips + 1} bad samples in a row from index {first} (the last: '
            f'{problem}); the dataset is mostly unreadable.\n  fix: check the data paths and '
            'files with tools/misc/check_dataset.py CONFIG')


def guard_train_dataset(cfg):
    """Wrap ``cfg.train_dataloader.dataset`` in :class:`GuardedDataset` (once), moving a
    ``skip_bad_samples`` set on the dataset (``--cfg-options
    train_dataloader.dataset.skip_bad_samples=True``) onto the wrapper. Returns ``cfg``."""
    loader = cfg.get('train_dataloader')
    if not isinstance(loader, dict) or not isinstance(loader.get('dataset'), dict):
        return cfg
    ds = loader['dataset']
    if ds.get('type') in ('GuardedDataset', GuardedDataset):
        return cfg
    skip = bool(ds.pop(SKIP_KEY, False))
    loader['dataset'] = dict(type='GuardedDataset', dataset=ds, skip_bad_samples=skip)
    return cfg
