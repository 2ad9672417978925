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


def install_count_convs_for_inference(model, parts=None, force=False):
    """Before compiling ``model`` for CPU inference: turn the convs that spiking neurons feed
    into exact int8 count convolutions (:mod:`mmsnn.ops.count_conv`), in the ``parts`` to be
    compiled (default :func:`compiled_parts`; a bare backbone: the whole model). Only in float32
    on a CPU with AMX (elsewhere they are slower), unless ``force``. Load the trained weights
    first: the weights are packed now. The convs feeding on spikes are found by one no-grad
    eval forward of a random 128x128 image (and of the backbone's outputs through the neck).
    Returns the names of the converted convs."""
    from ..ops.count_conv import install_count_convs, probe_image
    names = compiled_parts(model) if parts is None else parts
    modules = [(f'{name}.', getattr(model, name)) for name in names] or [('', model)]
    image = probe_image(modules[0][1])
    if image is None:
        return []
    inputs = (image,)
    converted = []
    for prefix, module in modules:
        done, out = install_count_convs(module, *inputs, force=force)
        converted += [prefix + name for name in done]
        if out is None:
            break
        inputs = (out,)  # the backbone's outputs are the neck's input
    return converted


def compile_for_inference(model, backend='inductor', count_convs=None, **options):
    """Compile ``model.backbone`` and ``model.neck`` in place (``nn.Module.compile``), for
    inference (``tools/test.py --compile``). Returns the names of the compiled parts.

    In place, so parameter names and checkpoints stay as they are (``torch.compile(module)``
    would prefix every key with ``_orig_mod.``). The heads stay eager: their post-processing
    (RPN proposals, NMS, RoI selection, resizing each prediction to its image) has shapes that
    depend on the data, which would mean a graph break or a recompilation per image, and the
    time is in the backbone and the neck. A model with neither (a bare backbone) is compiled
    whole; the name returned is then its class name.

    ``count_convs``: before compiling, compute the convs that spiking neurons feed as exact
    int8 products of the spike counts (:func:`install_count_convs_for_inference`; their names
    end up in ``model.count_convs``). None (default): where that pays, a float32 model on a CPU
    with AMX, compiled by inductor; True: also elsewhere; False: never. The trained weights
    must be loaded before.
    """
    kwargs = compile_kwargs(dict(options, backend=backend))
    compiled = compiled_parts(model)
    # auto: with inductor only, which fuses the conversion to counts into the neurons' kernels
    auto = count_convs is None and backend == 'inductor'
    # (added to those the fast path made in the eager parts, if any)
    model.count_convs = list(getattr(model, 'count_convs', [])) + (
        install_count_convs_for_inference(model, compiled, force=bool(count_convs))
        if auto or count_convs else [])
    for name in compiled:
        getattr(model, name).compile(**kwargs)
    if not compiled:
        model.compile(**kwargs)
        compiled = [type(model).__name__]
    return compiled


__all__ = ['INDUCTOR_OPTIONS', 'EagerParamUpdateHook', 'add_compile_hooks', 'compile_kwargs',
           'compile_for_inference', 'compiled_parts', 'install_count_convs_for_inference',
           'keep_param_update_eager']
