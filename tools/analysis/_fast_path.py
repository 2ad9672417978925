"""Before/after timing of the inference fast path (``mmsnn.models.fuse_for_inference``),
shared by ``benchmark_backbone.py --fast-path`` and ``benchmark.py --fast-path``.

Both models live in one process and run in alternation (plain, fused, plain, fused, ...), so
whatever else the machine is doing slows both alike; the ratio of the medians is reported.
"""
import copy
import statistics
import time


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
        print(f'{r["model"]:44} | {r["plain_s"]:8.3f} {r["fused_s"]:8.3f} {r["speedup"]:7.2f}x'
              f'  {"(target >= %.1fx %s)" % (target, "met" if r["speedup"] >= target else "NOT met")}',
              flush=True)
