"""Activation checkpointing (``with_cp``) that does not count a batch twice.

``torch.utils.checkpoint`` recomputes a forward in the backward pass. In train mode that
recompute runs every BatchNorm on the same batch again, and its running statistics would count
it a second time; here the recompute leaves the module's buffers as the first forward left
them, so a checkpointed model's outputs, gradients and buffers equal the plain model's.
Neurons need nothing: each runs all T steps of its input within one call, from a reset
membrane, so the recompute sees the state of the first forward.
"""
import contextlib

import torch
import torch.utils.checkpoint as cp


@contextlib.contextmanager
def buffers_restored(module):
    """Within it ``module``'s buffers (BN running statistics) may change; after it they hold
    what they held before."""
    buffers = list(module.buffers())
    kept = [b.clone() for b in buffers]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, k in zip(buffers, kept):
                b.copy_(k)


@contextlib.contextmanager
def _recomputing(module):
    module._mmsnn_recomputing = True
    try:
        yield
    finally:
        module._mmsnn_recomputing = False


def in_recompute(module):
    """Whether ``module``'s layers run in the backward pass's recompute of :func:`checkpoint`
    (whose outputs nobody reads: only what autograd saves there is used)."""
    return getattr(module, '_mmsnn_recomputing', False)


@contextlib.contextmanager
def _recompute_context(module):
    with buffers_restored(module), _recomputing(module):
        yield


def checkpoint(module, fn, *args):
    """``fn(*args)`` (``fn`` runs ``module``'s layers) with its activations recomputed in the
    backward pass instead of kept (non-reentrant checkpoint); the recompute leaves
    ``module``'s buffers unchanged, and :func:`in_recompute` tells ``module`` where it
    is. Under ``torch.compile`` the checkpoint is traced into the
    graph, whose recompute (AOTAutograd's) replays no buffer update: there it gets no
    contexts (dynamo cannot trace a ``context_fn``)."""
    if torch.compiler.is_compiling():
        return cp.checkpoint(fn, *args, use_reentrant=False)
    return cp.checkpoint(fn, *args, use_reentrant=False, context_fn=lambda: (
        contextlib.nullcontext(), _recompute_context(module)))


def wants_checkpoint(with_cp, tensors):
    """Checkpointing pays only where a backward will run through ``tensors``."""
    return with_cp and torch.is_grad_enabled() and any(
        t.requires_grad for t in tensors if isinstance(t, torch.Tensor))
