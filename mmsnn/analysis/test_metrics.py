"""What ``tools/test.py`` adds around the toolbox's evaluation: the metrics file, the
prediction dump of ``--out``, and "the detector predicted nothing" said as such.
"""
import os.path as osp

import mmengine
from mmengine.evaluator import BaseMetric

from ..utils.atomic import atomic_write


def save_metrics(metrics, paths, config, checkpoint):
    """Write the metrics, with the config and checkpoint they belong to, as JSON to every
    path in ``paths`` (numpy values as JSON numbers: ``mmengine.dump``)."""
    record = dict(config=osp.abspath(config), checkpoint=osp.abspath(checkpoint),
                  metrics=metrics)
    text = mmengine.dump(record, file_format='json', indent=2)
    for path in paths:
        atomic_write(path, text)


def dump_metric(cfg, out_file):
    """``--out``: the toolbox's own dump. mmdet's ``DumpDetResults`` stores masks RLE-encoded
    (as COCO tools read them) and drops the ground truth; mmseg ships no dump of its own, so
    its predictions go through mmengine's ``DumpResults``."""
    if cfg.get('default_scope') == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=out_file)
    from mmengine.evaluator import DumpResults
    return DumpResults(out_file_path=out_file)


class PredictionCounter(BaseMetric):
    """Counts the test images and the instances a detector predicted (after its score
    threshold), so that "predicted nothing" is said instead of an empty metrics block."""

    def __init__(self):
        super().__init__(collect_device='cpu')
        self.images = self.instances = 0

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            pred = sample.get('pred_instances') if isinstance(sample, dict) else None
            scores = pred.get('scores') if isinstance(pred, dict) else None
            self.results.append(None if scores is None else len(scores))

    def compute_metrics(self, results):
        counts = [n for n in results if n is not None]  # None: not a detector's sample
        self.images, self.instances = len(counts), int(sum(counts))
        return {}


#: what mmdet's CocoMetric reports per metric (bbox, segm)
_COCO_KEYS = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def _score_thresholds(test_cfg, prefix='model.test_cfg'):
    if isinstance(test_cfg, dict):
        for key, value in test_cfg.items():
            if key == 'score_thr':
                yield f'{prefix}.{key}', value
            else:
                yield from _score_thresholds(value, f'{prefix}.{key}')


def zero_detection_metrics(cfg, metrics, num_images):
    """Say that a detector predicted nothing, and report its COCO metrics as zeros (mmdet's
    ``CocoMetric`` returns nothing at all then)."""
    thresholds = ', '.join(f'{k}={v}' for k, v in
                           _score_thresholds((cfg.get('model') or {}).get('test_cfg')))
    print(f'note: the model predicted no instance above the score threshold'
          f'{f" ({thresholds})" if thresholds else ""} on any of the {num_images} test images, '
          'so every metric is 0. An untrained or diverged model does this; lower the '
          'threshold with --cfg-options to look at low-score predictions.')
    metrics = dict(metrics or {})
    evaluators = cfg.get('test_evaluator')
    for ev in evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]:
        if not isinstance(ev, dict) or 'CocoMetric' not in str(ev.get('type')):
            continue
        kinds = ev.get('metric', 'bbox')
        prefix = ev.get('prefix') or 'coco'
        for kind in [kinds] if isinstance(kinds, str) else kinds:
            for key in _COCO_KEYS:
                metrics.setdefault(f'{prefix}/{kind}_{key}', 0.0)
    return metrics
