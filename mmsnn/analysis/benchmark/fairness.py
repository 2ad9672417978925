"""What makes ``tools/analysis/benchmark.py``'s SNN-vs-ReLU-twin comparison fair (issue 14).

* :func:`calibrate_batchnorm` -- data-driven normalisation of a randomly initialised model.
  At init every BatchNorm's running statistics are mean 0 / variance 1, so in eval mode BN is
  the identity and nothing keeps the activations in range: the ReLU twin's residual stream
  and its softmax-free attention (a sum over all tokens) grow block after block until they
  overflow at COCO size, while the spiking model's counts die out (its quantiser rounds the
  shrinking inputs to zero). Either way inference then times a degenerate network. The fix
  is the one a trained model has: every BN's running statistics are set to those of its own
  input on the benchmark batch (one forward in train mode with a cumulative average), so in
  eval mode every BN output is about N(0, 1) per channel. Applied to every variant alike.
* :func:`activation_range` -- the evidence: the neurons' inputs (max |x|, non-finite and
  denormal fractions), how many neuron outputs are non-zero, and the RMS of the backbone taps.
* :func:`fixed_rois` -- a detector's heads do the same work in every variant: the RPN's
  proposals are replaced by a fixed set and the box head's detections by a fixed set, so the
  RoI head sees the same number of RoIs whatever the weights.
"""
import contextlib

import torch
from torch.nn.modules.batchnorm import _BatchNorm

#: the smallest normal float32: non-zero values below it are denormal (slow on most CPUs)
FLOAT32_TINY = torch.finfo(torch.float32).tiny


def calibrate_batchnorm(model, forward):
    """Set every BatchNorm's running statistics to those of its input during ``forward()``
    (run once in train mode, without gradients); returns how many BNs were set.

    In train mode each BN normalises with the batch's own statistics, so every later layer
    sees what it will see in eval mode with the calibrated statistics. Parameters (BN affine
    included) are not touched; the model's train/eval mode is restored.

    Not ``torch.optim.swa_utils.update_bn`` (which ``mmsnn.analysis.erf_models`` uses): that
    calls ``model(batch)`` per loader item, while this calibration is one ``forward()``
    closure (a detector's loss-mode call with its data samples) followed by the biased-
    variance fix below; a wrapper module to fit it would cost more lines than it saves."""
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in bns]
    counts = {}  # values per channel each BN normalised over

    def count(module, inputs):
        counts[module] = inputs[0].numel() // inputs[0].shape[1]

    handles = [m.register_forward_pre_hook(count) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, exactly its statistics
    was_training = model.training
    model.train()
    try:
        with torch.no_grad():
            forward()
            for m, n in counts.items():
                # BN keeps the unbiased variance but normalises with the biased one; keep what
                # it normalised with, so eval mode computes what train mode did (on small maps
                # the n / (n - 1) would compound through the twin's cubic attention)
                if n > 1 and int(m.num_batches_tracked) == 1:
                    m.running_var.mul_((n - 1) / n)
    finally:
        for h in handles:
            h.remove()
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)
    return len(bns)


def _neurons(module):
    from mmsnn.models.neurons import MultiSpikeQuantizer, ReLUTwin, _MultiStepNeuron
    return [m for m in module.modules()
            if isinstance(m, (MultiSpikeQuantizer, _MultiStepNeuron, ReLUTwin))]


def activation_range(model, forward, parts=('backbone', 'neck')):
    """Run ``forward()`` once in eval mode without gradients and describe the activations of
    ``model``'s ``parts``: over every neuron (spiking or ReLU) input, ``max_abs`` (over the
    finite values), ``nonfinite`` and ``denormal`` (fractions of all values); ``active``, the
    fraction of non-zero neuron outputs; ``tap_rms``, the RMS of each backbone output."""
    acc = dict(max_abs=0.0, nonfinite=0, denormal=0, active=0, total=0)
    taps = []

    def neuron_hook(module, inputs, output):
        x = inputs[0].detach()
        finite = torch.isfinite(x)
        acc['nonfinite'] += int((~finite).sum())
        if finite.any():
            acc['max_abs'] = max(acc['max_abs'], float(x[finite].abs().max()))
        acc['denormal'] += int(((x.abs() < FLOAT32_TINY) & (x != 0)).sum())
        acc['active'] += int((output != 0).sum())
        acc['total'] += x.numel()

    def tap_hook(module, inputs, outputs):
        taps.extend(float(o.detach().double().pow(2).mean().sqrt()) for o in outputs)

    handles = [m.register_forward_hook(neuron_hook)
               for part in parts for m in _neurons(getattr(model, part))]
    handles.append(model.backbone.register_forward_hook(tap_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            forward()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    n = max(acc['total'], 1)
    return dict(max_abs=acc['max_abs'], nonfinite=acc['nonfinite'] / n,
                denormal=acc['denormal'] / n, active=acc['active'] / n, tap_rms=taps)


def fixed_proposals(img_shape, gt_bboxes, num, seed=0):
    """``num`` boxes ``[num, 4]`` (x1, y1, x2, y2) inside ``img_shape`` (h, w), the same for
    the same arguments: a quarter are the ground-truth boxes moved by at most 5% of their size
    (IoU > 0.8: positives for the sampler, so its positive quota is always filled), the rest
    random boxes of 8 px up to half the image side (mostly negatives)."""
    h, w = img_shape[:2]
    g = torch.Generator().manual_seed(seed)
    gt = torch.as_tensor(gt_bboxes, dtype=torch.float32).reshape(-1, 4)
    n_near = num // 4 if len(gt) else 0
    near = gt[torch.arange(n_near) % max(len(gt), 1)]
    size = (near[:, 2:] - near[:, :2]).repeat(1, 2)
    near = near + (torch.rand(n_near, 4, generator=g) - 0.5) * 0.1 * size
    n_far = num - n_near
    side = min(h, w)
    wh = torch.exp(torch.empty(n_far, 2).uniform_(
        float(torch.log(torch.tensor(8.0))), float(torch.log(torch.tensor(side / 2.0))),
        generator=g))
    centre = torch.rand(n_far, 2, generator=g) * torch.tensor([w, h])
    far = torch.cat([centre - wh / 2, centre + wh / 2], 1)
    boxes = torch.cat([near, far])
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h - 1)
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)  # no empty box
    return boxes


@contextlib.contextmanager
def fixed_rois(model, data_samples, seed=0):
    """Within the context, a two-stage detector's RoI head does a fixed amount of work.

    * The RPN still runs its convs (and its loss in training), but its proposals are
      :func:`fixed_proposals` of each image (from ``data_samples``' gt boxes and image shape):
      as many as the RPN config keeps (``max_per_img`` of ``train_cfg.rpn_proposal`` /
      ``test_cfg.rpn``). Training samples ``rcnn.sampler.num`` RoIs from them with the
      positive quota filled, so the mask head always sees the quota.
    * At inference the box head's post-processing (score threshold + NMS) is replaced by the
      first ``test_cfg.rcnn.max_per_img`` proposals with fixed random labels, so the mask head
      sees exactly that many detections.

    Yields a dict ``{'bbox': [...], 'mask': [...]}`` with the number of RoIs the box and the
    mask head got at each call (per time step: a ``[T*R]`` stack counts R).
    """
    from mmengine.structures import InstanceData

    rpn_head, roi_head = model.rpn_head, model.roi_head
    bbox_head = roi_head.bbox_head
    seen = dict(bbox=[], mask=[])
    cache = {}

    def proposals(i, meta, num):
        key = (i, num)
        if key not in cache:
            gts = data_samples[i].gt_instances.bboxes if 'gt_instances' in data_samples[i] \
                else torch.zeros(0, 4)
            gts = gts.tensor if hasattr(gts, 'tensor') else gts
            cache[key] = fixed_proposals(meta['img_shape'], gts.cpu(), num, seed + i)
        return cache[key]

    def rpn_predict_by_feat(cls_scores, bbox_preds, score_factors=None, batch_img_metas=None,
                            cfg=None, rescale=False, with_nms=True):
        cfg = rpn_head.test_cfg if cfg is None else cfg
        device = cls_scores[0].device
        out = []
        for i, meta in enumerate(batch_img_metas):
            boxes = proposals(i, meta, int(cfg.max_per_img)).to(device)
            out.append(InstanceData(bboxes=boxes.clone(), scores=boxes.new_ones(len(boxes)),
                                    labels=boxes.new_zeros(len(boxes), dtype=torch.long)))
        return out

    def bbox_predict_by_feat(rois, cls_scores, bbox_preds, batch_img_metas, rcnn_test_cfg=None,
                             rescale=False):
        num = int((rcnn_test_cfg or roi_head.test_cfg).max_per_img)
        out = []
        for i, meta in enumerate(batch_img_metas):
            boxes = proposals(i, meta, max(num, int(rpn_head.test_cfg.max_per_img)))[:num]
            boxes = boxes.to(rois[i].device).clone()
            if rescale:
                boxes = boxes / boxes.new_tensor(meta['scale_factor']).repeat((1, 2))
            g = torch.Generator().manual_seed(seed + i)
            labels = torch.randint(bbox_head.num_classes, (num,), generator=g)
            out.append(InstanceData(bboxes=boxes, scores=boxes.new_ones(num),
                                    labels=labels.to(boxes.device)))
        return out

    original_bbox_forward = roi_head._bbox_forward
    original_mask_forward = roi_head._mask_forward

    def bbox_forward(x, rois):
        seen['bbox'].append(int(rois.shape[0]))
        return original_bbox_forward(x, rois)

    def mask_forward(x, rois=None, pos_inds=None, bbox_feats=None):
        seen['mask'].append(int(rois.shape[0]) if rois is not None else int(pos_inds.sum()))
        return original_mask_forward(x, rois, pos_inds, bbox_feats)

    patches = [(rpn_head, 'predict_by_feat', rpn_predict_by_feat),
               (bbox_head, 'predict_by_feat', bbox_predict_by_feat),
               (roi_head, '_bbox_forward', bbox_forward),
               (roi_head, '_mask_forward', mask_forward)]
    for obj, name, fn in patches:
        setattr(obj, name, fn)  # an instance attribute shadows the class's method
    try:
        yield seen
    finally:
        for obj, name, _ in patches:
            delattr(obj, name)
