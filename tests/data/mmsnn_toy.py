"""A toy model, dataset, metric and hook for the tools' tests (``tests/data/toy_config.py``).

A tiny MetaSDT backbone + linear classifier on random 32x32 tensors: enough for the runner
to train, checkpoint, resume and test in seconds. Registered in mmdet's registries only (the
toy config runs with ``default_scope = 'mmdet'``); not part of mmsnn's module list. Import
it as ``mmsnn_toy`` with ``tests/data`` on PYTHONPATH (the tests set that up).
"""
import atexit
import os
import os.path as osp
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import DATASETS, HOOKS, METRICS, MODELS
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel


@MODELS.register_module(force=True)
class ToySpikeClassifier(BaseModel):
    """``backbone`` (a MetaSDT config) -> global average pool of its last tap -> linear.

    Fault injection: ``explode_from=N`` scales the loss from the N-th training step (counted
    in this process) on by 1e40, beyond float32's range: the loss is inf, as in a diverged run.
    """

    def __init__(self, backbone, num_classes=3, explode_from=None, data_preprocessor=None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.head = nn.Linear(self.backbone.out_channels[-1], num_classes)
        self.explode_from, self._steps = explode_from, 0

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feat = self.backbone(inputs)[-1].float().mean((2, 3))
        logits = self.head(feat).float()
        if mode == 'loss':
            loss = F.cross_entropy(logits, data_samples.long())
            self._steps += 1
            if self.explode_from is not None and self._steps >= self.explode_from:
                loss = loss * 1e40
            return dict(loss_cls=loss)
        if mode == 'predict':
            return [dict(pred_label=int(p.argmax()), gt_label=int(g))
                    for p, g in zip(logits, data_samples)]
        return logits


@DATASETS.register_module(force=True)
class ToySpikeDataset(torch.utils.data.Dataset):
    """``num_samples`` random images with random labels; the path arguments are accepted (and
    checked by the tools) but not read."""

    def __init__(self, num_samples=8, img_size=32, num_classes=3, seed=0, data_root='',
                 ann_file='', data_prefix=None, pipeline=None):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(num_samples, 3, img_size, img_size, generator=g)
        self.labels = torch.randint(0, num_classes, (num_samples,), generator=g)
        self.metainfo = dict(classes=tuple(f'class{i}' for i in range(num_classes)))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return dict(inputs=self.images[i], data_samples=self.labels[i])


@METRICS.register_module(force=True)
class ToyAccuracy(BaseMetric):
    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        self.results.extend(data_samples)

    def compute_metrics(self, results):
        hits = sum(r['pred_label'] == r['gt_label'] for r in results)
        return dict(accuracy=hits / max(len(results), 1))


@HOOKS.register_module(force=True)
class ToyRankMarkerHook(Hook):
    """Each process writes ``rank{R}.done`` (world size, iteration) into the work dir at the
    end of a run, so the distributed test can see that every rank finished; at the exit of the
    process it adds whether a process group was still open (the tool must close it: an open
    gloo group can abort the process during interpreter teardown)."""

    def after_run(self, runner):
        rank, world_size = get_dist_info()
        path = osp.join(runner.work_dir, f'rank{rank}.done')
        with open(path, 'w') as f:
            f.write(f'world_size={world_size} iter={runner.iter}\n')

        def note_open_group():
            import torch.distributed as dist
            with open(path, 'a') as f:
                f.write(f'group_open_at_exit={dist.is_initialized()}\n')
        atexit.register(note_open_group)


@HOOKS.register_module(force=True)
class ToyStallHook(Hook):
    """Fault injection: stops the run at one point until the test kills it (SIGKILL).

    At the point it writes ``marker`` (this process's pid) and sleeps, so the kill lands
    exactly there. ``after_iter=N``: after the N-th training iteration (counted from the
    start of training, before that iteration's checkpoint). ``in_save='epoch_2.pth'``:
    inside the save of that checkpoint, once its bytes are on disk under the temporary name
    and before the rename that publishes it. ``rank``: only that process stalls.
    """

    def __init__(self, marker, after_iter=None, in_save=None, rank=None):
        self.marker, self.after_iter, self.in_save, self.rank = marker, after_iter, in_save, rank

    def _mine(self):
        return self.rank is None or get_dist_info()[0] == self.rank

    def _stall(self):
        with open(self.marker + '.tmp', 'w') as f:
            f.write(str(os.getpid()))
        os.replace(self.marker + '.tmp', self.marker)
        while True:
            time.sleep(1)

    def before_run(self, runner):
        if self.in_save and self._mine():
            rename, hook = os.replace, self

            def stalling_rename(src, dst, *args, **kwargs):
                if osp.basename(str(dst)) == hook.in_save:
                    hook._stall()
                return rename(src, dst, *args, **kwargs)

            os.replace = stalling_rename

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.after_iter is not None and runner.iter + 1 == self.after_iter and self._mine():
            self._stall()
