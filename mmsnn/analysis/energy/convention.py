"""The counting convention of the energy report, and its energy presets.

The convention is the one the Spike-driven Transformer, Meta-SpikeFormer (SDT v2), SDT v3,
SpikeYOLO and Spikformer papers use, as restated in the project's reference note
"Firing rates, synaptic operations and energy: how the field counts them"
(``energy_report.md``)::

    E_img = E_MAC * MAC_dense + E_AC * sum_l SOP_l,     SOP_l = T * c_l * FLOPs_l

* ``FLOPs_l``: multiply-accumulates of synaptic layer ``l`` per image per time step, bias
  ignored, on the shapes of the real forward pass (each image is run on its own, so mmdet's
  varying input sizes are counted per image and then averaged). Conv: ``k_h k_w (C_in /
  groups) C_out H_out W_out``; Linear / Conv1d k=1: ``C_in C_out tokens``; transposed conv:
  ``k_h k_w (C_out / groups) C_in H_in W_in``; a product ``a @ b`` of ``[.., m, k] x [.., k,
  n]``: ``m k n`` per batch entry. BN (folded into the conv at inference), residual and
  membrane adds, scaling, pooling, upsampling, concatenation, neuron updates, RoIAlign, NMS
  and decoding are free.
* ``c_l`` (``rate``): mean integer spike count per element of the layer's *input*, 0..D
  (a count n stands for n binary spikes, so it costs n accumulates per synapse). For the
  backbone's quantiser, whose output is ``k / 4``, that is ``4 * mean(input)``: it is never
  multiplied by D again. ``r = c / D`` and the share of non-zero elements are reported too.
  The attention products are counted where they run: in Meta-SDT's named ``MatMul``
  modules (``<attn>.kv``, ``<attn>.qkv``) or as bare ``@`` / ``torch.matmul`` calls of any
  other model (``<module>.matmul<k>``, the k-th product of that module's call).
  For the spike-driven attention computed as ``q (k^T v)``: ``k^T v`` has both sides spikes
  and is charged ``min(c_k, c_v)``; ``q (k^T v)`` multiplies spikes with an integer matrix
  and is charged ``c_q``; the order that really runs is the one reported.
* ``T``: real time steps of the neuron that produced the input, read when it runs (a neck or
  head neuron gets its ``T`` from ``follow_time`` during the forward pass). I-LIF / LIF run
  ``T`` steps; the integer quantiser keeps the time axis of its input (the "T = 1, D = 4"
  model: ``T = 1`` on a backbone image, ``T`` on features a multi-step backbone kept the
  time axis of).
* ``MAC_dense``: FLOPs of every layer whose input is not spikes (the first conv on the
  image, and any layer failing the spike-driven check). How often it is charged depends on
  where its input comes from, never on its shape: the image repeated over the ``T`` steps
  (direct encoding) is the same at every step and is charged once per image; a real-valued
  tensor computed from neurons (e.g. a residual stream) holds ``T`` different steps and is
  charged ``T`` times. The time steps of a tensor are followed through every torch op of
  the forward pass: a neuron's output has its ``T``; an ``expand`` / ``repeat`` over new
  steps multiplies them; a ``mean`` / ``sum`` over the time axis (dim 0 of length ``T``)
  removes them; any other op passes them on.
* Data movement is free even when it is computed with products: the matrix products inside
  an mmcv ``RoIAlign`` (the fast path's ``SeparableRoIAlign``) are not counted.
* ``E_MAC = 4.6 pJ, E_AC = 0.9 pJ`` (45 nm, 32-bit float; Horowitz, ISSCC 2014; preset
  ``'fp32'``), or the ``'int8'`` preset (0.23 pJ / 0.03 pJ). ``E_ANN = E_MAC * sum FLOPs``
  (the same network as an ANN).

Spike-driven check. A tensor is spikes when it comes from a spiking neuron module
(:class:`~mmsnn.models.neurons.MultiSpikeQuantizer`, ``ILIF``, ``LIF``, or a spikingjelly
node) -- directly, through a view (reshape, flatten, transpose) or through a module that keeps
spikes (identity, dropout in eval, max-pooling, zero padding) -- *and* ``input * norm`` is an
integer (tolerance 1e-4) in ``[0, D]``, with ``D`` and ``norm`` read from that neuron.
Values alone are never trusted ({0, 1} could be anything). A layer that fails is charged as
MAC, marked ``spike_driven=False`` and named with the op that produced its input
(``input_from``); the encoding layer that reads the image has ``input_from='input'`` and is
not a violation.
"""

#: energy per operation in pJ: (E_MAC, E_AC)
ENERGY_PRESETS = {
    'fp32': (4.6, 0.9),   # 45 nm, 32-bit float (Horowitz, ISSCC 2014)
    'int8': (0.23, 0.03),  # 45 nm, 8-bit integer
}

#: what the report counts as free (listed in its metadata)
EXCLUDED_OPS = ('BatchNorm (folded into the conv)', 'bias', 'residual and membrane adds',
                'scaling', 'pooling', 'upsampling', 'concatenation', 'neuron updates',
                'RoIAlign', 'NMS', 'box / mask decoding')

_TOL = 1e-4
