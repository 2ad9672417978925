"""Before/after timing of the inference fast path (``mmsnn.deploy.convert_for_inference``),
shared by ``tools/analysis/benchmark_backbone.py --fast-path`` and ``benchmark.py --fast-path``.

Three variants of the same model (same seed, same input), each in its own process:

    plain   as the model is built (eval, no grad): what inference cost before the fast path
    fused   ``convert_for_inference(model)``, i.e. ``tools/test.py --fuse-conv-bn``: the model
            rewrites alone
    fast    fused, and the process keeps freed memory for reuse, i.e. ``tools/test.py
            --fuse-conv-bn --keep-freed-memory`` (``mmsnn.utils.keep_freed_memory``, asked
            for explicitly; a process-wide allocator setting, which is why every variant
            needs a process of its own; CPU only, so on a GPU fast is fused)

The processes run in rounds, alternating (plain, fused, fast, plain, ...), so whatever else
the machine does slows all alike; each process warms up once, then times ``CALLS`` calls.
The medians over all rounds are reported, with each process's peak RSS (the price of
keeping freed memory). The speed-up of the issue is plain / fast.
"""
import statistics
import sys
import time

import mmengine

from .processes import MeasurementFailed, peak_rss_mib, print_result, run_measurement

VARIANTS = ('plain', 'fused', 'fast')
#: timed calls per process, after one warm-up call
CALLS = 2

#: profiler op names of the dense arithmetic (convolutions and matrix products): the kernels
#: run at BLAS/oneDNN/NNPACK speed, so the rest of the time is what the fast path can remove.
DENSE_OPS = ('aten::mkldnn_convolution', 'aten::_slow_conv2d_forward', 'aten::cudnn_convolution',
             'aten::_nnpack_spatial_convolution',
             'aten::_convolution_depthwise2d', 'aten::thnn_conv2d', 'aten::slow_conv_dilated2d',
             'aten::mm', 'aten::bmm', 'aten::addmm', 'aten::baddbmm')


def prepare(model, variant):
    """``model`` (eval, on its device) as the given variant."""
    from mmsnn.deploy import convert_for_inference, keep_freed_memory, on_cpu
    model.eval()
    if variant == 'plain':
        return model
    if variant == 'fast' and on_cpu(model):
        keep_freed_memory()
    return convert_for_inference(model)


def dense_share(fn):
    """Profile one call of ``fn`` (CPU); returns (total self CPU s, dense-op self CPU s, table)."""
    from torch.profiler import profile
    with profile() as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    dense = sum(e.self_cpu_time_total for e in events if e.key in DENSE_OPS) / 1e6
    return total, dense, events.table(sort_by='self_cpu_time_total', row_limit=12)


def state(model):
    """What a measuring process ran: whether the model is fused, whether it is on the CPU and
    whether the process keeps freed memory (printed with the times, so a driver can check the
    variant)."""
    from mmsnn.deploy import allocator, on_cpu
    return dict(fused=bool(getattr(model, 'fused_for_inference', False)),
                on_cpu=on_cpu(model), keeps_freed_memory=allocator._applied)


def child(fn, sync, profile=False, model=None):
    """The body of one measuring process: warm up, time :data:`CALLS` calls of ``fn`` (no
    grad) and print one JSON line (with :func:`state` of ``model``); with ``profile`` instead
    profile one call (the top ops go to stderr)."""
    import torch
    with torch.no_grad():
        fn()
        sync()
        if profile:
            total, dense, table = dense_share(fn)
            print(table, file=sys.stderr)
            print_result(dict(total_s=total, dense_s=dense))
            return
        times = []
        for _ in range(CALLS):
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
    print_result(dict(times=times, peak_rss_mib=peak_rss_mib(), **state(model)))


def run(cmd, what, show_stderr=False):
    """Run one measuring process (``cmd`` + its variant arguments); its JSON line. With
    ``show_stderr`` its stderr (a profile's op table) is printed."""
    try:
        return run_measurement(cmd, what, show_stderr=show_stderr)
    except MeasurementFailed as e:
        raise SystemExit(f'fast-path measurement {what} failed:\n{e.stderr[-3000:]}') from None


def measure(label, cmd_for, rounds, profile=False):
    """One result row for ``label``. ``cmd_for(variant, profile)`` is the command line of a
    measuring process. With ``profile`` also the top ops of plain and fast and their shares
    of dense arithmetic (``row['dense_share']``)."""
    times = {v: [] for v in VARIANTS}
    peaks = {v: [] for v in VARIANTS}
    for _ in range(rounds):
        for v in VARIANTS:
            r = run(cmd_for(v, False), f'{label} {v}')
            # (fused, keeps freed memory); the allocator setting is for CPU processes only
            expected = dict(plain=(False, False), fused=(True, False),
                            fast=(True, r['on_cpu']))[v]
            if (r['fused'], r['keeps_freed_memory']) != expected:
                raise SystemExit(f'{label} {v}: the process ran fused={r["fused"]}, '
                                 f'keeps_freed_memory={r["keeps_freed_memory"]}, not {v}')
            times[v] += r['times']
            peaks[v].append(r['peak_rss_mib'])
    med = {v: statistics.median(t) for v, t in times.items()}
    row = dict(model=label, plain_s=med['plain'], fused_s=med['fused'], fast_s=med['fast'],
               speedup=med['plain'] / med['fast'], speedup_fused=med['plain'] / med['fused'],
               peak_rss_mib={v: max(p) for v, p in peaks.items()},
               runs=len(times['plain']))
    if profile:
        row['dense_share'] = profile_shares(label, cmd_for)
    print_rows([row], header=False)
    return row


def profile_shares(label, cmd_for):
    """Profile one call of plain and of fast (top ops printed); returns their shares of the
    dense arithmetic (convolutions and matrix products) in the self CPU time."""
    shares = {}
    for v in ('plain', 'fast'):
        print(f'--- profile of {v} {label} (one call, self CPU time):', flush=True)
        r = run(cmd_for(v, True), f'{label} {v} profile', show_stderr=True)
        shares[v] = r['dense_s'] / r['total_s']
        print(f'{v} {label}: {r["total_s"]:.3f} s self CPU, of which convolutions and matrix '
              f'products {r["dense_s"]:.3f} s ({100 * shares[v]:.0f}%)\n', flush=True)
    return shares


def print_rows(rows, target=1.6, header=True):
    if header:
        from mmsnn.utils.machine import cpu_description
        print(f'CPU: {cpu_description()}')
        print(f'{"model":40} | {"plain s":>8} {"fused s":>8} {"fast s":>8} {"speed-up":>8} '
              f'{"peak RSS MiB plain/fast":>24}  (medians of '
              f'{rows[0]["runs"] if rows else 0} calls in alternating processes)')
    for r in rows:
        met = 'met' if r['speedup'] >= target else 'NOT met'
        share = (f'; convolutions and matrix products {100 * r["dense_share"]["plain"]:.0f}% '
                 f'-> {100 * r["dense_share"]["fast"]:.0f}% of the time'
                 if 'dense_share' in r else '')
        rss = f'{r["peak_rss_mib"]["plain"]:.0f}/{r["peak_rss_mib"]["fast"]:.0f}'
        print(f'{r["model"]:40} | {r["plain_s"]:8.3f} {r["fused_s"]:8.3f} {r["fast_s"]:8.3f} '
              f'{r["speedup"]:7.2f}x {rss:>24}  (plain/fast; target >= {target:.1f}x {met}'
              f'{share})', flush=True)


def report(rows, json_path=None):
    """Print the rows and write them as JSON to ``json_path`` if given; returns the rows."""
    print()
    print_rows(rows)
    if json_path:
        mmengine.dump(rows, json_path, file_format='json', indent=2)
    return rows
