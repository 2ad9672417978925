"""STERFHook: the same losses with the hook on and off, its files, its pictures in the local
and TensorBoard visual backends, resumed runs, the config switch."""
import json
import logging
import os
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmsnn.engine.hooks import STERFHook, add_st_erf_hook
from mmsnn.models import MetaSDT
from mmsnn.utils.checkpoint_io import mmengine_checkpoint_globals

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


class TinyNet(BaseModel):
    """A classifier with a multi-step MetaSDT backbone and a dropout head (uses the RNG)."""

    def __init__(self):
        super().__init__()
        self.backbone = MetaSDT(embed_dims=(8, 16, 16, 16), out_indices=(1, 4), T=2,
                                neuron_cfg=dict(type='LIF'))
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(16, 3)
        self.losses = []

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.head(self.drop(self.backbone(inputs)[-1].mean((2, 3))))
        if mode == 'loss':
            loss = F.cross_entropy(logits, labels)
            self.losses.append(loss.item())
            return dict(loss=loss)
        if mode == 'predict':
            return [dict(pred=p) for p in logits.argmax(1)]
        return logits


class RandomSet(torch.utils.data.Dataset):
    def __init__(self, n=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, 32, 32, generator=g)
        self.y = torch.randint(0, 3, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], labels=self.y[i])


class CountMetric(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results.extend(data_samples)

    def compute_metrics(self, results):
        return dict(n=len(results))


def loader(shuffle):
    return dict(dataset=RandomSet(), batch_size=2, num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=shuffle),
                collate_fn=dict(type='default_collate'))


def train(work_dir, name, hooks, max_iters=4, checkpoint_interval=-1, resume=False,
          vis_backends=None):
    torch.manual_seed(0)
    model = TinyNet()
    extra = {}
    if vis_backends is not None:
        extra['visualizer'] = dict(type='Visualizer', vis_backends=vis_backends)
    runner = Runner(
        model=model, work_dir=str(work_dir), experiment_name=name,
        train_dataloader=loader(True), val_dataloader=loader(False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters, val_interval=1000),
        val_cfg=dict(), val_evaluator=[CountMetric()],
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),  # grads ~1e6 at init
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', by_epoch=False,
                                           interval=checkpoint_interval,
                                           save_last=checkpoint_interval > 0)),
        custom_hooks=hooks, default_scope='mmdet', randomness=dict(seed=0),
        resume=resume, log_level='WARNING', **extra)
    with mmengine_checkpoint_globals():  # as tools/train.py: lets torch.load resume
        runner.train()
    return model.losses, runner


@pytest.mark.slow
def test_hook_does_not_change_training(tmp_path):
    base, _ = train(tmp_path / 'off', 'erf_off', [])
    hook = dict(type='STERFHook', enable=True, interval=2, by_epoch=False, num_inputs=2,
                size=(32, 32), input_source='val', strict=True)
    with_hook, runner = train(tmp_path / 'on', 'erf_on', [hook], vis_backends=[
        dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
    assert len(base) == 4
    assert with_hook == base  # bit-identical losses
    sterf = [h for h in runner.hooks if isinstance(h, STERFHook)][0]
    assert [t for t, _ in sterf.history] == ['before_train', 'iter_2', 'iter_4', 'after_train']

    out = tmp_path / 'on' / 'st_erf' / 'iter_2'
    for f in ('erf.png', 'st_erf.png', 'temporal_erf.png'):
        with open(out / f, 'rb') as fh:
            assert fh.read(8) == PNG_MAGIC
        from PIL import Image
        with Image.open(out / f) as im:
            arr = np.asarray(im)
        assert arr.ndim == 3 and arr.shape[0] > 50 and arr.shape[1] > 50 and arr.std() > 0
    erf = np.load(out / 'erf_tap1.npy')
    assert erf.shape == (2, 32, 32) and erf.sum() > 0  # one map per time step
    assert np.load(out / 'st_erf_tap4.npy').shape == (2, 32, 32)
    assert np.load(out / 'temporal_erf_tap4.npy').shape == (2, 2)
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['tag'] == 'iter_2' and metrics['T'] == 2
    assert set(metrics['taps']) == {'tap1', 'tap4'}
    assert 0 < metrics['taps']['tap1']['coverage'] <= 1
    assert 'area@0.5' in metrics['taps']['tap4'] and 'temporal_share' in metrics['taps']['tap4']
    # the scalars went to the visualizer (LocalVisBackend -> scalars.json)
    scalars = os.path.join(runner.log_dir, 'vis_data', 'scalars.json')
    text = open(scalars).read()
    assert 'st_erf/tap4/coverage' in text
    # ... and the pictures too (LocalVisBackend -> vis_image/{name}_{step}.png)
    from PIL import Image
    images = os.path.join(runner.log_dir, 'vis_data', 'vis_image')
    for name in ('st_erf_tap1', 'st_erf_tap4', 'st_erf_grid', 'st_erf_delays',
                 'st_erf_temporal'):
        for step in (0, 2, 4):
            with Image.open(os.path.join(images, f'{name}_{step}.png')) as im:
                arr = np.asarray(im.convert('RGB'))
            assert arr.shape[0] > 1 and arr.std() > 0, (name, step)
    with Image.open(os.path.join(images, 'st_erf_tap1_2.png')) as im:
        assert im.size == (32, 32)  # one pixel per input pixel
    # ... and to TensorBoard (TensorboardVisBackend -> event file)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(os.path.join(runner.log_dir, 'vis_data'),
                              size_guidance={'images': 0, 'scalars': 0})
    events.Reload()
    tags = events.Tags()
    expected = {'st_erf_tap1', 'st_erf_tap4', 'st_erf_grid', 'st_erf_delays',
                'st_erf_temporal'}
    assert expected <= set(tags['images'])
    for tag in expected:  # before_train at 0, iter_2, iter_4 and after_train (also at 4)
        assert sorted({e.step for e in events.Images(tag)}) == [0, 2, 4], tag
    tap = events.Images('st_erf_tap4')[-1]
    assert (tap.width, tap.height) == (32, 32)
    assert 'st_erf/tap4/coverage' in tags['scalars']


@pytest.mark.slow
def test_resumed_run_keeps_before_train(tmp_path):
    hook = dict(type='STERFHook', enable=True, interval=0, num_inputs=1, size=(16, 16),
                pictures=False, strict=True)
    train(tmp_path, 'first', [hook], max_iters=2, checkpoint_interval=2)
    first = json.loads((tmp_path / 'st_erf' / 'before_train' / 'metrics.json').read_text())
    _, runner = train(tmp_path, 'resumed', [hook], max_iters=4, checkpoint_interval=2,
                      resume=True)
    assert runner.iter == 4
    sterf = [h for h in runner.hooks if isinstance(h, STERFHook)][0]
    assert [t for t, _ in sterf.history] == ['resume_iter_2', 'after_train']
    # the first run's maps of the initial weights are still there, untouched
    again = json.loads((tmp_path / 'st_erf' / 'before_train' / 'metrics.json').read_text())
    assert again == first and first['iter'] == 0
    resumed = json.loads((tmp_path / 'st_erf' / 'resume_iter_2' / 'metrics.json').read_text())
    assert resumed['iter'] == 2 and resumed['tag'] == 'resume_iter_2'


def _fake_runner(model, tmp_path):
    logger = logging.getLogger('sterf_test')
    return types.SimpleNamespace(model=model, work_dir=str(tmp_path), logger=logger,
                                 iter=0, epoch=0, visualizer=None, _val_loop=None)


def test_hook_skips_model_without_backbone(tmp_path, caplog):
    hook = STERFHook(size=16)
    with caplog.at_level(logging.WARNING, logger='sterf_test'):
        hook.before_train(_fake_runner(nn.Linear(2, 2), tmp_path))
    assert 'no `backbone`' in caplog.text
    assert not (tmp_path / 'st_erf').exists()


def test_disabled_hook_does_nothing(tmp_path):
    model = types.SimpleNamespace(backbone=None)
    hook = STERFHook(enable=False)
    hook.before_train(_fake_runner(model, tmp_path))
    hook.after_train(_fake_runner(model, tmp_path))
    assert not (tmp_path / 'st_erf').exists() and hook.history == []


def test_single_step_backbone_probe(tmp_path):
    class Det(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = MetaSDT(embed_dims=(8, 16, 16, 16), out_indices=(1, 2))

    hook = STERFHook(size=(32, 32), num_inputs=1, taps=[0, 2])  # tap 0 via its module
    runner = _fake_runner(Det(), tmp_path)
    hook.before_train(runner)
    out = tmp_path / 'st_erf' / 'before_train'
    assert (out / 'erf.png').is_file() and (out / 'erf_tap0.npy').is_file()
    assert not (out / 'st_erf.png').exists()  # single-step: no delays
    assert np.load(out / 'erf_tap2.npy').shape == (1, 32, 32)


def test_config_switch():
    cfg = Config(dict(custom_hooks=[dict(type='STERFHook', enable=False, interval=5)]))
    cfg.merge_from_dict({'custom_hooks.0.enable': True})  # --cfg-options custom_hooks.0.enable=True
    from mmdet.registry import HOOKS as DET_HOOKS
    from mmseg.registry import HOOKS as SEG_HOOKS
    for registry in (DET_HOOKS, SEG_HOOKS):
        hook = registry.build(cfg.custom_hooks[0])
        assert isinstance(hook, STERFHook) and hook.enable and hook.interval == 5
    # the top-level switch for tools/train.py
    cfg = Config(dict(st_erf=dict(enable=False, interval=3), custom_hooks=[]))
    assert add_st_erf_hook(cfg).custom_hooks == []
    cfg.merge_from_dict({'st_erf.enable': True})
    hooks = add_st_erf_hook(cfg).custom_hooks
    assert len(hooks) == 1 and hooks[0]['type'] == 'STERFHook' and hooks[0]['interval'] == 3


def test_bad_hook_arguments():
    with pytest.raises(ValueError, match='input_source'):
        STERFHook(input_source='imagenet')
