"""Side-by-side timing in one process: each route once as a warm-up, then ``repeats`` rounds
in which every route runs once, in turn, so that a slow spell of the machine hits all of them."""
import statistics
import time


def alternating_medians(routes, repeats):
    """``routes``: {name: zero-argument callable}. Returns ({name: warm-up output},
    {name: median seconds over ``repeats`` alternating calls})."""
    outputs = {name: fn() for name, fn in routes.items()}  # warm-up (primitive creation)
    times = {name: [] for name in routes}
    for _ in range(repeats):
        for name, fn in routes.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return outputs, {name: statistics.median(t) for name, t in times.items()}


__all__ = ['alternating_medians']
