"""ERF analysis of spiking backbones: spatial, spatio-temporal (ST-ERF) and temporal ERFs,
their metrics and figures; the energy report (firing rates, SOPs, energy per image).

    >>> from mmsnn.analysis import spatial_erf, area_ratio
    >>> erf = spatial_erf(backbone, torch.randn(2, 3, 128, 128), output_index=0)  # [H, W]
    >>> area_ratio(erf)  # {0.2: ..., 0.3: ..., 0.5: ..., 0.99: ...}

The gradient engine is :mod:`~mmsnn.analysis.erf_engine`, the recipes built on it
:mod:`~mmsnn.analysis.erf`, the scalar summaries :mod:`~mmsnn.analysis.metrics`. Plotting
lives in :mod:`mmsnn.analysis.plots` (imported on demand, it loads matplotlib).

    >>> from mmsnn.analysis import energy_report
    >>> energy_report(model, torch.randn(4, 3, 128, 128)).totals['energy_mj']

The energy report is :mod:`~mmsnn.analysis.energy`.
"""
from .energy import EnergyReport, energy_report  # noqa: F401
from .erf import (analyze_backbone, backbone_tap_targets, is_multi_step,  # noqa: F401
                  layer_erf, make_noise_inputs, spatial_erf, st_erf, temporal_erf)
from .erf_engine import ERFResult, compute_erf, erf_mode, merge_results  # noqa: F401
from .metrics import (DEFAULT_THRESHOLDS, area_ratio, erf_coverage, erf_metrics,  # noqa: F401
                      gaussian_width)

__all__ = ['spatial_erf', 'layer_erf', 'st_erf', 'temporal_erf', 'compute_erf',
           'ERFResult', 'erf_mode', 'make_noise_inputs', 'backbone_tap_targets',
           'is_multi_step', 'area_ratio', 'erf_coverage', 'gaussian_width', 'erf_metrics',
           'DEFAULT_THRESHOLDS', 'analyze_backbone', 'merge_results', 'energy_report',
           'EnergyReport']
