"""Time-aware standard RoI head for spiking Mask R-CNN."""
import torch
from mmdet.models.roi_heads import StandardRoIHead

from ...registry import register
from ..time_axis import set_neuron_steps, mean_over_time


def _batch_major(x):
    """Time-major ``[T, B, ...]`` level features -> batch-major ``[B, T, ...]`` views.

    mmdet's RoI-head code indexes features per image (``lvl_feat[i]``, e.g. for the sampler);
    with the batch axis first that stays correct when the features carry a time axis.
    """
    return tuple(f.transpose(0, 1) if f.dim() == 5 else f for f in x)


@register('model', scopes=('mmdet',))
class SpikingRoIHead(StandardRoIHead):
    """``StandardRoIHead`` that accepts features with a time axis.

    With 4-D features it is exactly ``StandardRoIHead``. With time-major 5-D features
    ``[T, B, C, H, W]`` (``MetaSDT(keep_time=True)`` + ``SpikingFPN``), the RoI extractors take
    every step's features with the same RoIs (in one call, as ``T*B`` images), the box / mask
    heads run on the ``[T*R, ...]`` stack (so every spiking layer sees every step), and
    ``cls_score``, ``bbox_pred`` and the mask logits are averaged over T before the losses /
    post-processing.

    Internally (``_bbox_forward``, ``_mask_forward``) 5-D features are batch-major
    ``[B, T, C, H, W]``; the public entry points (``loss``, ``predict``, ``forward``) take
    the time-major features the detector produces and transpose them (a view, no copy).
    """

    def loss(self, x, rpn_results_list, batch_data_samples):
        return super().loss(_batch_major(x), rpn_results_list, batch_data_samples)

    def predict(self, x, rpn_results_list, batch_data_samples, rescale=False):
        return super().predict(_batch_major(x), rpn_results_list, batch_data_samples,
                               rescale=rescale)

    def forward(self, x, rpn_results_list, batch_data_samples=None):
        return super().forward(_batch_major(x), rpn_results_list, batch_data_samples)

    @staticmethod
    def _extract(extractor, x, rois):
        """RoI features ``[R, ...]`` (4-D features) or time-major ``[T*R, ...]`` and T."""
        feats = x[:extractor.num_inputs]
        if feats[0].dim() != 5:
            return extractor(feats, rois), None
        # One call for all steps: the features as T*B images (time-major, a view of what the
        # neck made) and the RoIs repeated per step with image index t*B + b. Each RoI's
        # features are computed as for its own step (the same numbers as T calls on
        # ``f[:, t]``), without a per-step slice whose backward writes a T-times larger
        # zero tensor per step and level.
        B, T = feats[0].shape[:2]
        folded = tuple(f.transpose(0, 1).flatten(0, 1) for f in feats)
        steps = torch.arange(T, dtype=rois.dtype, device=rois.device).repeat_interleave(len(rois))
        rois_t = rois.repeat(T, 1)
        rois_t[:, 0] += steps * B
        return extractor(folded, rois_t), T

    def _bbox_forward(self, x, rois):
        bbox_feats, T = self._extract(self.bbox_roi_extractor, x, rois)
        if self.with_shared_head:
            bbox_feats = self.shared_head(bbox_feats)
        set_neuron_steps(self.bbox_head, T)
        cls_score, bbox_pred = self.bbox_head(bbox_feats)
        if T is not None:
            bbox_feats = bbox_feats.reshape(T, -1, *bbox_feats.shape[1:])  # [T, R, ...]
        return dict(cls_score=mean_over_time(cls_score, T),
                    bbox_pred=mean_over_time(bbox_pred, T), bbox_feats=bbox_feats)

    def _mask_forward(self, x, rois=None, pos_inds=None, bbox_feats=None):
        assert (rois is not None) ^ (pos_inds is not None and bbox_feats is not None)
        T = None
        if rois is not None:
            mask_feats, T = self._extract(self.mask_roi_extractor, x, rois)
            if self.with_shared_head:
                mask_feats = self.shared_head(mask_feats)
        elif bbox_feats.dim() == 5:  # shared extractor, [T, R, C, h, w] from _bbox_forward
            T = bbox_feats.shape[0]
            mask_feats = bbox_feats[:, pos_inds.bool()].flatten(0, 1)
        else:
            mask_feats = bbox_feats[pos_inds.bool()]
        set_neuron_steps(self.mask_head, T)
        mask_preds = mean_over_time(self.mask_head(mask_feats), T)
        return dict(mask_preds=mask_preds, mask_feats=mask_feats)
