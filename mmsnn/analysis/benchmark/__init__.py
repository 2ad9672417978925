"""What the benchmark scripts (``tools/analysis/benchmark.py``, ``benchmark_backbone.py``,
``spike_agreement.py``, ``peak_rss_by_op.py``,
``benchmark_depthwise_grad.py``, ``benchmark_count_conv.py``) are made of, one module per concept:

* :mod:`.processes` -- one measurement per process: the driver that runs a measuring process
  and reads its JSON line, and the peak-memory reading inside it;
* :mod:`.fairness` -- what makes the SNN-vs-ReLU-twin comparison fair (BN calibration,
  activation range, fixed RoIs);
* :mod:`.cost_of_spiking` -- the configs and variants compared, the ratios, the result block;
* :mod:`.fast_path` -- before/after timing of the inference fast path;
* :mod:`.docs_block` -- the marked block of ``docs/en/benchmarks.md`` the results go into;
* :mod:`.tensor_bytes` -- the peak of live tensor bytes at the dispatcher (the same on every
  CPU: what tests assert on);
* :mod:`.rss_by_op` -- the peak RSS while each op ran, kernels' own memory included
  (``tools/analysis/peak_rss_by_op.py``);
* :mod:`.depthwise_grad` -- the depthwise convs' weight gradient, oneDNN's against mmsnn's
  (``tools/analysis/benchmark_depthwise_grad.py``);
* :mod:`.count_conv` -- the convs fed by spikes, float32 against int8 count convolutions
  (``tools/analysis/benchmark_count_conv.py``);
* :mod:`.alternating` -- kernels timed side by side in one process, alternating.
"""
