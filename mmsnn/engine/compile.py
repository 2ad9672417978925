"""mmengine's ``compile`` option for mmsnn models: the parameter update stays eager.

``compile=True`` (``tools/train.py CONFIG --cfg-options compile=True``) makes the runner wrap
``model.train_step`` in :func:`torch.compile`. ``train_step`` holds the whole iteration: data
preprocessor, forward, loss, and ``optim_wrapper.update_params`` (backward, optimizer step,
zero_grad). Dynamo then traces into the optimizer too, and there it fails: mmengine builds
the optimizer's param groups as ``ConfigDict`` (a ``dict`` subclass) and torch 2.13's dynamo
only handles plain-dict groups when it makes the optimizer "capturable"::

    torch._dynamo.exc.InternalTorchDynamoError: AttributeError: 'UserDefinedDictVariable'
    object has no attribute 'items'  (torch/_dynamo/variables/optimizer.py, _set_capturable)

after it has compiled the forward and backward (minutes). Even with plain dicts a traced
optimizer step would recompile at every learning-rate change (a Python float in the group,
i.e. every iteration of a warm-up or poly schedule). So :class:`EagerParamUpdateHook` runs
``update_params`` outside the compiled region (:func:`torch._dynamo.disable`): the compiled
graph is preprocessor + forward + loss, its backward is the one AOTAutograd compiled with it,
and the optimizer runs eagerly, as in any eager run. ``tools/train.py`` adds the hook to every
run with ``compile`` set.

mmengine compiles for training only. For testing, ``tools/test.py --compile`` calls
:func:`compile_for_inference`, which compiles the backbone and the neck in place.
"""
import torch
from mmengine.hooks import Hook

from ..registry import register


def _eager(fn):
    """``fn`` that dynamo does not trace (a graph break around its call), once."""
    if getattr(fn, '_mmsnn_eager', False):
        return fn
    wrapped = torch._dynamo.disable(fn)
    wrapped._mmsnn_eager = True
    return wrapped


def _always_sync():
    return True


def keep_param_update_eager(optim_wrapper):
    """Let ``optim_wrapper.update_params`` (backward, step, zero_grad) run outside any
    compiled region; for an ``OptimWrapperDict``, that of every wrapper in it. Without
    gradient accumulation, ``should_sync()`` answers True without reading the counter."""
    wrappers = optim_wrapper.values() if hasattr(optim_wrapper, 'optim_wrappers') \
        else [optim_wrapper]
    for wrapper in wrappers:
        wrapper.update_params = _eager(wrapper.update_params)
        if getattr(wrapper, '_accumulative_counts', 1) == 1:
            # without gradient accumulation every iteration syncs; answering so without
            # reading the iteration counter keeps dynamo from guarding on it (the compiled
            # ``optim_context`` asks), which recompiled the whole step at iteration 2
            wrapper.should_sync = _always_sync


@register('hook')
class EagerParamUpdateHook(Hook):
    """Before training: the optimizer wrapper's ``update_params`` runs eagerly (see the
    module docstring), so mmengine's ``compile`` option compiles the model only."""

    priority = 'VERY_HIGH'

    def before_train(self, runner):
        keep_param_update_eager(runner.optim_wrapper)


#: inductor settings for mmsnn models (each can be overridden through ``compile.options``).
#: ``layout_optimization`` off: inductor would run the convolutions channels-last and make
#: every fused neuron kernel transpose between layouts (its bool window mask and spikes
#: written through ``transpose_mxn``), which made the compiled train step slower
#: (docs/en/user_guides/compile.md)
INDUCTOR_OPTIONS = {'layout_optimization': False}


def compile_kwargs(compile_cfg=True):
    """``torch.compile`` keyword arguments from a ``compile`` setting (True or a dict of them):
    with the inductor backend (the default), :data:`INDUCTOR_OPTIONS` under the given
    ``options``."""
    kwargs = {} if compile_cfg is True else dict(compile_cfg)
    if kwargs.get('backend', 'inductor') == 'inductor':
        kwargs['options'] = {**INDUCTOR_OPTIONS, **dict(kwargs.get('options') or {})}
    return kwargs


def add_compile_hooks(cfg):
    """With ``compile`` set in ``cfg``: add :class:`EagerParamUpdateHook` to
    ``cfg.custom_hooks`` (once) and the inductor settings for mmsnn models
    (:func:`compile_kwargs`) to ``cfg.compile``. Returns ``cfg``."""
    if not cfg.get('compile'):
        return cfg
    cfg.compile = compile_kwargs(cfg.compile)
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(isinstance(h, dict) and h.get('type') in ('EagerParamUpdateHook',
                                                          EagerParamUpdateHook)
               for h in hooks):
        hooks.append(dict(type='EagerParamUpdateHook'))
    cfg.custom_hooks = hooks
    return cfg


def compiled_parts(model):
    """The names of the parts :func:`compile_for_inference` compiles: ``backbone`` and
    ``neck``, those ``model`` has."""
    return [name for name in ('backbone', 'neck') if getattr(model, name, None) is not None]


def compile_for_inference(model, backend='inductor', **options):
    """Compile ``model.backbone`` and ``model.neck`` in place (``nn.Module.compile``), for
    inference (``tools/test.py --compile``). Returns the names of the compiled parts.

    In place, so parameter names and checkpoints stay as they are (``torch.compile(module)``
    would prefix every key with ``_orig_mod.``). The heads stay eager: their post-processing
    (RPN proposals, NMS, RoI selection, resizing each prediction to its image) has shapes that
    depend on the data, which would mean a graph break or a recompilation per image, and the
    time is in the backbone and the neck. A model with neither (a bare backbone) is compiled
    whole; the name returned is then its class name.
    """
    kwargs = compile_kwargs(dict(options, backend=backend))
    compiled = compiled_parts(model)
    for name in compiled:
        getattr(model, name).compile(**kwargs)
    if not compiled:
        model.compile(**kwargs)
        compiled = [type(model).__name__]
    return compiled


__all__ = ['INDUCTOR_OPTIONS', 'EagerParamUpdateHook', 'add_compile_hooks', 'compile_kwargs',
           'compile_for_inference', 'compiled_parts',
           'keep_param_update_eager']
