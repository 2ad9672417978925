"""Before/after timing of the inference fast path (``mmsnn.models.fuse_for_inference``),
shared by ``benchmark_backbone.py --fast-path`` and ``benchmark.py --fast-path``.

Both models live in one process and run in alternation (plain, fused, plain, fused, ...), so
whatever else the machine is doing slows both alike; the ratio of the medians is reported.
"""
import copy
import statistics
import time

#: profiler op names of the dense arithmetic (convolutions and matrix products), which the fast
#: path does not change: its result must stay the same, and on this CPU the kernels already
#: run at BLAS/oneDNN speed.
DENSE_OPS = ('aten::mkldnn_convolution', 'aten::_slow_conv2d_forward', 'aten::cudnn_convolution',
             'aten::_convolution_depthwise2d', 'aten::thnn_conv2d', 'aten::slow_conv_dilated2d',
             'aten::mm', 'aten::bmm', 'aten::addmm', 'aten::baddbmm')


def alternate(fns, repeats, sync=lambda: None):
    """Run each callable of ``fns`` ({name: fn}) once to warm up, then ``repeats`` rounds in
    alternation; returns {name: list of seconds}."""
    for fn in fns.values():
        fn()
        sync()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def plain_and_fused(model):
    """``model`` in eval mode and its fused copy."""
    from mmsnn.models import fuse_for_inference
    model.eval()
    return model, fuse_for_inference(copy.deepcopy(model))


def fast_path_row(label, times):
    """One result row: medians and the speed-up plain / fused."""
    plain, fused = statistics.median(times['plain']), statistics.median(times['fused'])
    return dict(model=label, plain_s=plain, fused_s=fused, speedup=plain / fused,
                runs=len(times['plain']))


def print_rows(rows, target=1.6):
    print(f'{"model":44} | {"plain s":>8} {"fused s":>8} {"speed-up":>8}  (medians of '
          f'{rows[0]["runs"] if rows else 0} alternating runs)')
    for r in rows:
        met = 'met' if r['speedup'] >= target else 'NOT met'
        bound = (f'; bound with the same dense arithmetic {r["dense_bound"]:.2f}x'
                 if 'dense_bound' in r else '')
        print(f'{r["model"]:44} | {r["plain_s"]:8.3f} {r["fused_s"]:8.3f} {r["speedup"]:7.2f}x'
              f'  (target >= {target:.1f}x {met}{bound})', flush=True)

def dense_share(fn):
    """Profile one call of ``fn`` (CPU); returns (total self CPU s, dense-op self CPU s, table)."""
    from torch.profiler import profile
    with profile() as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    dense = sum(e.self_cpu_time_total for e in events if e.key in DENSE_OPS) / 1e6
    return total, dense, events.table(sort_by='self_cpu_time_total', row_limit=12)


def print_profile(label, plain_fn, fused_fn):
    """The top ops of both models, and the most the fast path could gain if every op but the
    dense arithmetic took no time at all (Amdahl): plain total / the smaller of the two
    models' dense times (the fused convs also add the folded BN's shift as their bias)."""
    shares = {}
    for name, fn in (('plain', plain_fn), ('fused', fused_fn)):
        total, dense, table = dense_share(fn)
        shares[name] = (total, dense)
        print(f'{name} {label}: {total:.3f} s self CPU, of which convolutions and matrix '
              f'products {dense:.3f} s ({100 * dense / total:.0f}%)')
        print(table)
    dense = min(shares['plain'][1], shares['fused'][1])
    bound = shares['plain'][0] / dense
    print(f'{label}: speed-up bound with the same dense arithmetic = {bound:.2f}x '
          f'(plain {shares["plain"][0]:.3f} s / dense {dense:.3f} s)\n')
    return bound


def measure(label, plain_fn, fused_fn, repeats, sync, profile=False):
    """One result row for ``label``: the two calls alternated (no grad), and with ``profile``
    also their top ops and the speed-up bound (``row['dense_bound']``)."""
    import torch
    with torch.no_grad():
        row = fast_path_row(label, alternate(dict(plain=plain_fn, fused=fused_fn), repeats, sync))
        if profile:
            row['dense_bound'] = print_profile(label, plain_fn, fused_fn)
    return row


def report(rows, json_path=None):
    """Print the rows and write them as JSON to ``json_path`` if given; returns the rows."""
    import json
    print_rows(rows)
    if json_path:
        with open(json_path, 'w') as f:
            json.dump(rows, f, indent=2)
    return rows
