"""Driving the counter: :func:`energy_report` on tensors, and the test loop that
``tools/analysis/energy.py`` and ``tools/test.py --energy`` (through
:class:`~mmsnn.engine.hooks.EnergyHook`) share."""
import torch

from ...utils.compile import eager_module
from .counter import EnergyCounter


def _images(inputs):
    if isinstance(inputs, torch.Tensor):
        return [inputs[i:i + 1] for i in range(inputs.shape[0])]
    return list(inputs)


def energy_report(model, inputs, forward=None, T=None, preset='fp32', e_mac=None, e_ac=None,
                  meta=None, group_fn=None):
    """Run ``model`` image by image and return its :class:`EnergyReport` (per image).

    Args:
        model (nn.Module): any module; called as ``model(x)`` (or ``forward(model, x)``),
            in eval mode and without gradients (its mode is restored afterwards). A
            ``torch.compile``-d model runs as its eager module (the counter's hooks need every
            module call in Python; :func:`~mmsnn.utils.compile.eager_module`).
        inputs (Tensor | Sequence): a ``[B, ...]`` tensor of B images (each is run alone
            as ``x[i:i+1]``), or a sequence of per-image inputs passed as they are (e.g.
            ``[T, C, H, W]`` tensors for a model that takes time-folded input).
        forward (callable | None): ``forward(model, x)`` instead of ``model(x)``.
        T (int | None): time steps folded into the leading axis of each input, for a model
            fed time-folded frames (see :class:`EnergyCounter`); spike layers take ``T``
            from their neuron.
        preset (str): 'fp32' (E_MAC 4.6 pJ, E_AC 0.9 pJ) or 'int8' (0.23 / 0.03 pJ);
            ``e_mac`` / ``e_ac`` (pJ) override it.
        meta (dict | None): extra metadata stored in the report (config, checkpoint...).
        group_fn (callable | None): ``layer name -> group`` for the subtotals.
    """
    model = eager_module(model)
    forward = forward or (lambda m, x: m(x))
    images = _images(inputs)
    if not images:
        raise ValueError('energy_report needs at least one input image')
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with EnergyCounter(model, T=T, group_fn=group_fn) as counter, torch.no_grad():
            for x in images:
                shape = x.shape if isinstance(x, torch.Tensor) else None
                with counter.image(input_shape=shape):
                    forward(model, x)
            return counter.report(preset, e_mac, e_ac, meta)
    finally:
        for m, mode in modes.items():
            m.training = mode


def counted_test_step(counter, test_step, data):
    """One test step counted as the images of its batch (``len(data['inputs'])``; run the
    test loader with ``batch_size=1`` so that each image is counted at its own size, without
    the batch's padding). The step of both ``tools/analysis/energy.py`` (through
    :func:`count_test_images`) and ``tools/test.py --energy`` (through ``EnergyHook``)."""
    n = len(data['inputs']) if isinstance(data, dict) and 'inputs' in data else 1
    with counter.image(num_images=n, input_shape='forward'):
        return test_step(data)


def count_test_images(model, loader, num_images, counter=None, progress=None):
    """Run ``model.test_step`` on the first ``num_images`` batches of ``loader`` under an
    :class:`EnergyCounter` (a new one unless ``counter`` is given) and return the counter,
    its hooks removed. ``progress()`` is called after each batch."""
    counter = counter or EnergyCounter(model)
    try:
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if i == num_images:
                    break
                counted_test_step(counter, model.test_step, batch)
                if progress is not None:
                    progress()
    finally:
        counter.remove()
    return counter
