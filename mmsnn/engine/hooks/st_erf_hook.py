"""``STERFHook``: measure the (spatio-temporal) ERF of the backbone while training."""
import os.path as osp
import random
import time
import traceback

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...analysis.erf import analyze_backbone, is_multi_step, make_noise_inputs
from ...registry import register

__all__ = ['STERFHook', 'add_st_erf_hook']


@register('hook')
class STERFHook(Hook):
    """Spatial / ST-ERF / temporal ERF of ``model.backbone`` at chosen points of training.

    **Turning it on.** Put the hook in a config, off by default, and switch it on from the
    command line::

        custom_hooks = [dict(type='STERFHook', enable=False, interval=1000, by_epoch=False)]
        # python tools/train.py CONFIG --cfg-options custom_hooks.0.enable=True

    (``custom_hooks.0`` is the hook's position in that list.) Or keep a top-level key that
    does not depend on the position, and let ``tools/train.py`` turn it into the hook with
    :func:`add_st_erf_hook` (``--cfg-options st_erf.enable=True``)::

        st_erf = dict(enable=False, interval=1000, by_epoch=False)

    A disabled hook does nothing at all.

    **When.** ``before_train`` (after weights are initialised / loaded), every ``interval``
    epochs (``by_epoch=True``) or iterations, and ``after_train``. Tags (folder names):
    ``before_train``, ``epoch_{n}``, ``iter_{n}``, ``after_train``. A resumed run starts from
    trained weights, so its first probe is tagged ``resume_epoch_{n}`` (``by_epoch``) or
    ``resume_iter_{n}`` (the epoch / iteration it resumes from) and never overwrites the
    first run's ``before_train``.

    **What.** On rank 0 only (:func:`mmengine.dist.is_main_process`), the backbone of the
    detector / segmentor (``runner.model.backbone``, DDP wrappers unwrapped) is probed in
    eval mode under ``torch.enable_grad()`` with neuron states reset; the train/eval flag of
    every module and the RNG states (python ``random``, numpy, torch, CUDA) are restored
    afterwards and no parameter gradient is touched, so a run with the hook trains exactly
    like a run without it. Inputs: ``num_inputs`` N(0, 1) noise images of ``size`` (drawn
    from a private generator seeded with ``seed``; independent noise per time step for a
    multi-step backbone), or with ``input_source='val'`` the first ``num_inputs`` images of
    the val dataloader after the model's data preprocessor (resized to ``size`` unless
    ``size`` is None; repeated over time for a multi-step backbone). A multi-step backbone
    (``stateful`` neurons and ``T > 1``) also gets ST-ERF delay maps and the temporal ERF.

    **Outputs**, under ``{work_dir}/{out_dir}/{tag}/``: ``erf_tap{k}.npy``,
    ``st_erf_tap{k}.npy``, ``temporal_erf_tap{k}.npy``, ``erf.png``, ``st_erf.png``,
    ``temporal_erf.png`` and ``metrics.json`` (see
    :func:`mmsnn.analysis.plots.save_erf_report`). Metrics are logged with
    ``runner.logger`` and sent to ``runner.visualizer.add_scalars`` as ``st_erf/tap{k}/...``;
    with ``pictures`` the heatmaps go to every visual backend of the visualizer
    (``add_image``, at the probe's iteration): ``st_erf_tap{k}`` (each tap's spatial ERF of
    the last time step, one pixel per input pixel, log colour scale), ``st_erf_grid`` (the
    ``erf.png`` figure) and, for multi-step backbones, ``st_erf_delays`` (the delay grid) and
    ``st_erf_temporal`` (the temporal curves). So ``visualizer=dict(type=...,
    vis_backends=[dict(type='TensorboardVisBackend')])`` shows them in TensorBoard.

    Args:
        enable (bool): master switch.
        interval (int): run every ``interval`` epochs / iterations (0: never in between).
        by_epoch (bool): ``interval`` counts epochs (True) or iterations (False).
        before_train (bool), after_train (bool): run at these points too.
        taps (list[int] | None): stage taps to probe (default: the backbone's out_indices).
        num_inputs (int), size ((H, W) | int | None): the probe inputs.
        input_source ('noise' | 'val'): N(0, 1) noise or val images.
        seed (int): seed of the noise generator (the global RNG is not used).
        grad ('abs' | 'relu'), reduce ('mean' | 'sum'): ERF definition.
        thresholds (tuple[float]): area-ratio thresholds.
        out_dir (str): folder under ``runner.work_dir``.
        pictures (bool): write PNGs and send the images to the visual backends.
        batched_grads (bool): all taps and steps in one vmapped backward (faster, more
            memory); default one backward per target on the retained graph.
        strict (bool): re-raise errors of the probe (default: log them and keep training).
    """

    priority = 'VERY_LOW'

    def __init__(self, enable=True, interval=0, by_epoch=True, before_train=True,
                 after_train=True, taps=None, num_inputs=2, size=(128, 128),
                 input_source='noise', seed=0, grad='abs', reduce='mean',
                 thresholds=(0.2, 0.3, 0.5, 0.99), out_dir='st_erf', pictures=True,
                 batched_grads=False, strict=False):
        if input_source not in ('noise', 'val'):
            raise ValueError(f"input_source must be 'noise' or 'val', got {input_source!r}")
        if grad not in ('abs', 'relu') or reduce not in ('mean', 'sum'):
            raise ValueError("grad must be 'abs'/'relu' and reduce 'mean'/'sum'")
        if int(num_inputs) < 1:
            raise ValueError(f'num_inputs must be >= 1, got {num_inputs}')
        self.enable = bool(enable)
        self.interval = int(interval)
        self.by_epoch = bool(by_epoch)
        self.run_before_train = bool(before_train)
        self.run_after_train = bool(after_train)
        self.taps = None if taps is None else [int(t) for t in taps]
        self.num_inputs = int(num_inputs)
        self.size = (None if size is None else
                     (int(size), int(size)) if isinstance(size, int) else tuple(map(int, size)))
        self.input_source = input_source
        self.seed = int(seed)
        self.grad, self.reduce = grad, reduce
        self.thresholds = tuple(float(t) for t in thresholds)
        self.out_dir = out_dir
        self.pictures = bool(pictures)
        self.batched_grads = bool(batched_grads)
        self.strict = bool(strict)
        self._warned = set()
        self.history = []  # (tag, metrics) of every probe, for tests and callers

    # ------------------------------------------------------------------ trigger points
    def before_train(self, runner):
        if self.run_before_train:
            self._probe(runner, _first_tag(runner, self.by_epoch), runner.iter)

    def after_train_epoch(self, runner):
        if self.by_epoch and self.interval > 0 and self.every_n_epochs(runner, self.interval):
            self._probe(runner, f'epoch_{runner.epoch + 1}', runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if (not self.by_epoch and self.interval > 0
                and self.every_n_train_iters(runner, self.interval)):
            self._probe(runner, f'iter_{runner.iter + 1}', runner.iter + 1)

    def after_train(self, runner):
        if self.run_after_train:
            self._probe(runner, 'after_train', runner.iter)

    # ------------------------------------------------------------------ the probe
    def _warn_once(self, runner, key, msg):
        if key not in self._warned:
            self._warned.add(key)
            runner.logger.warning(msg)

    def _probe(self, runner, tag, step):
        if not self.enable or not is_main_process():
            return
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        backbone = getattr(model, 'backbone', None)
        if not isinstance(backbone, torch.nn.Module):
            self._warn_once(runner, 'no-backbone',
                            f'STERFHook: {type(model).__name__} has no `backbone` module; '
                            'skipping the ERF analysis')
            return
        rng = _get_rng_state()
        start = time.time()
        try:
            inputs = self._inputs(runner, model, backbone)
            summary = analyze_backbone(backbone, inputs, self.taps, grad=self.grad,
                                       reduce=self.reduce, thresholds=self.thresholds,
                                       batched_grads=self.batched_grads)
            self._report(runner, tag, step, summary, time.time() - start)
        except Exception as e:  # noqa: BLE001 - an analysis must not kill a training run
            if self.strict:
                raise
            self._warn_once(runner, f'error-{type(e).__name__}',
                            f'STERFHook ({tag}) failed, training continues: '
                            f'{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}')
        finally:
            _set_rng_state(rng)

    def _inputs(self, runner, model, backbone):
        p = next(backbone.parameters(), None)
        dtype = p.dtype if p is not None else torch.float32
        device = p.device if p is not None else torch.device('cpu')
        multi = is_multi_step(backbone)
        T = int(backbone.T) if multi else None
        if self.input_source == 'val':
            images = self._val_images(runner, model)
            if images is not None:
                images = images.to(device=device, dtype=dtype)
                if multi:
                    images = images.unsqueeze(0).expand(T, *images.shape).contiguous()
                return images
        size = self.size or (128, 128)
        return make_noise_inputs(self.num_inputs, size, time_steps=T, seed=self.seed,
                                 dtype=dtype, device=device)

    def _val_images(self, runner, model):
        try:
            loader = getattr(runner.val_loop, 'dataloader', None)
        except Exception:  # noqa: BLE001 - no or broken val config
            loader = None
        if loader is None:
            self._warn_once(runner, 'no-val', "STERFHook: input_source='val' but there is no "
                            'val dataloader; using N(0, 1) noise instead')
            return None
        preprocessor = getattr(model, 'data_preprocessor', None)
        images = []
        with torch.no_grad():
            for batch in loader:
                if preprocessor is not None:
                    batch = preprocessor(batch, False)
                x = batch['inputs'] if isinstance(batch, dict) else batch
                for img in x:  # a [B, 3, H, W] tensor or a list of [3, H, W] images
                    img = img.float()
                    if self.size is not None and tuple(img.shape[-2:]) != self.size:
                        img = F.interpolate(img[None], size=self.size, mode='bilinear',
                                            align_corners=False)[0]
                    images.append(img)
                if len(images) >= self.num_inputs:
                    break
        if not images:
            return None
        sizes = {tuple(i.shape) for i in images[:self.num_inputs]}
        if len(sizes) > 1:  # size=None and images of different sizes: use the first one's
            first = images[0].shape[-2:]
            images = [F.interpolate(i[None], size=first, mode='bilinear',
                                    align_corners=False)[0] for i in images]
        return torch.stack(images[:self.num_inputs])

    def _report(self, runner, tag, step, summary, seconds):
        from ...analysis.plots import report_figures, save_erf_report  # matplotlib on use
        out = osp.join(runner.work_dir, self.out_dir, tag)
        figures = report_figures(summary, tag) if self.pictures else {}
        save_erf_report(summary, out, title=tag, pictures=self.pictures, figures=figures,
                        extra=dict(tag=tag, iter=int(step), epoch=int(runner.epoch),
                                   input_source=self.input_source, seconds=seconds))
        scalars, lines = {}, []
        for name, e in summary['taps'].items():
            m = e['metrics']
            for key, value in m.items():
                scalars[f'st_erf/{name}/{key}'] = value
            areas = ' '.join(f'{k[5:]}:{v:.4f}' for k, v in m.items() if k.startswith('area@'))
            line = (f'{name}: area {areas} | coverage {m["coverage"]:.3f} | '
                    f'sigma {m["sigma"]:.1f}px')
            if 'temporal_share' in m:
                line += f' | temporal share {m["temporal_share"]:.3f}'
            lines.append(line)
        runner.logger.info(f'STERFHook [{tag}] ({seconds:.1f}s, {summary["num_inputs"]} '
                           f'inputs {summary["size"][0]}x{summary["size"][1]}, '
                           f'T={summary["T"]}) -> {out}\n  ' + '\n  '.join(lines))
        visualizer = getattr(runner, 'visualizer', None)
        if visualizer is not None:
            finite = {k: float(v) for k, v in scalars.items() if np.isfinite(v)}
            visualizer.add_scalars(finite, step=int(step))
            if self.pictures:
                _add_images(visualizer, summary, figures, int(step))
        self.history.append((tag, {n: dict(e['metrics']) for n, e in summary['taps'].items()}))


def _first_tag(runner, by_epoch):
    """``before_train``, or ``resume_{epoch|iter}_{n}`` when the run resumed from a
    checkpoint (its loop counters are restored before ``before_train``)."""
    if by_epoch and runner.epoch > 0:
        return f'resume_epoch_{runner.epoch}'
    if runner.iter > 0:  # an iteration-based loop (its epoch stays 0)
        return f'resume_iter_{runner.iter}'
    return 'before_train'


def _add_images(visualizer, summary, figures, step):
    """The heatmaps and figures of one probe to every visual backend (``add_image``; names
    without '/', which mmengine's LocalVisBackend would take for a folder)."""
    from ...analysis.plots import figure_to_rgb, heatmap_rgb
    for name, e in summary['taps'].items():
        visualizer.add_image(f'st_erf_{name}', heatmap_rgb(e['spatial'][-1]), step=step)
    for kind, image_name in (('erf', 'st_erf_grid'), ('st_erf', 'st_erf_delays'),
                             ('temporal_erf', 'st_erf_temporal')):
        if kind in figures:
            visualizer.add_image(image_name, figure_to_rgb(figures[kind]), step=step)


def _get_rng_state():
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state:
        torch.cuda.set_rng_state_all(state['cuda'])


def add_st_erf_hook(cfg, key='st_erf'):
    """Turn a top-level ``cfg[key]`` dict (e.g. ``st_erf = dict(enable=True, interval=500,
    by_epoch=False)``) into an ``STERFHook`` entry of ``cfg.custom_hooks``.

    For ``tools/train.py``: call it after ``--cfg-options`` were merged and before building
    the Runner. Does nothing when the key is absent or ``enable`` is false, and replaces an
    ``STERFHook`` already listed in ``custom_hooks``. Returns ``cfg``.
    """
    spec = cfg.get(key, None)
    if not spec or not spec.get('enable', False):
        return cfg
    hook = dict(type='STERFHook')
    hook.update({k: v for k, v in dict(spec).items()})
    hooks = [h for h in (cfg.get('custom_hooks', None) or [])
             if not (isinstance(h, dict) and h.get('type') == 'STERFHook')]
    hooks.append(hook)
    cfg.custom_hooks = hooks
    return cfg
