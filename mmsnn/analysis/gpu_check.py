"""GPU readiness check (issue 23.5), run by ``tools/analysis/gpu_check.py``: on a CUDA machine
in about 10 minutes, one table of

* the s-size SRB Mask R-CNN (``configs/det/sdt_srb_s_coco.py``) at 800x1344: train step and
  inference, eager and compiled (``torch.compile`` of backbone and neck), fp32 and AMP
  (``torch.autocast`` fp16 forward, as ``--amp`` trains), with peak memory
  (``torch.cuda.max_memory_allocated``);
* the same detector with an I-LIF T = 4 backbone: train step and peak memory;
* spike agreement: every neuron's spikes of the backbone on a small input, on the GPU in
  float32 against the CPU in float64 (the share of equal spike elements).

Without CUDA the compiled and AMP rows say ``skipped (no CUDA device)``; the eager fp32 rows
(also I-LIF T = 4) and the spike agreement run on the CPU at the sizes given, so the test suite
exercises the script (``tests/test_analysis/test_gpu_check.py``) and it cannot rot.
"""
import statistics
import time

#: the detector's default input size (its config: ``compile_benchmark.MODELS['maskrcnn']``)
SIZE = (800, 1344)


def _sync(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_step(fn, device, calls):
    """(first call s, median of ``calls`` further calls s; None for ``calls=0``)."""
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times) if times else None


def detector_row(device, size, mode, compiled, amp, T=1, calls=2):
    """One row: build the detector on ``device``, run ``mode`` (train / infer) and time it."""
    import torch

    from .compile_benchmark import apply_route, build, make_inputs, step_fn
    model = build('maskrcnn', T).to(device)
    batch = make_inputs('maskrcnn', model, size)
    batch = (batch[0].to(device), [s.to(device) for s in batch[1]])
    if compiled:
        apply_route(model, 'compiled', mode)
    fn = step_fn('maskrcnn', model, mode, batch)
    if amp:
        inner = fn

        def fn():
            with torch.autocast(device.type, dtype=torch.float16 if device.type == 'cuda'
                                else torch.bfloat16):
                return inner()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    first, steady = time_step(fn, device, calls)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == 'cuda' else None
    return dict(first_s=first, time_s=steady, peak_mib=peak)


def spike_agreement(device, size=(64, 96)):
    """Share of equal spike elements, backbone on ``device`` in float32 vs CPU float64."""
    import torch

    from .compile_benchmark import _neurons, _recording
    from mmsnn.models import MetaSDT
    torch.manual_seed(0)
    ref = MetaSDT(arch='s', mixer='srb', out_indices=(1, 2, 3, 4)).double().eval()
    test = MetaSDT(arch='s', mixer='srb', out_indices=(1, 2, 3, 4)).eval()
    test.load_state_dict(ref.state_dict())
    test.to(device)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        _, s_ref = _recording(lambda: ref(x), ref)
        _, s_test = _recording(lambda: test(x.float().to(device)), test)
    assert len(s_ref) == len(s_test) == len(_neurons(ref))
    total = sum(s.numel() for s in s_ref)
    equal = sum(int((a == b.double().cpu()).sum()) for a, b in zip(s_ref, s_test))
    return equal / total


def _step_time(row):
    if row['time_s'] is None:
        return f'first call {row["first_s"]:.3f} s (--calls 0: no timed call)'
    return f'{row["time_s"]:.3f} s/step (first call {row["first_s"]:.1f} s)'


def run_check(size=SIZE, calls=2, spike_size=(64, 96), log=print):
    """Every row of the check; returns the rows ``[(what, result text)]``."""
    import torch
    cuda = torch.cuda.is_available()
    device = torch.device('cuda' if cuda else 'cpu')
    rows = []

    def add(what, text):
        rows.append((what, text))
        log(f'{what}: {text}')

    add('device', torch.cuda.get_device_name(0) if cuda else 'CPU only')
    for mode in ('train', 'infer'):
        for amp in (False, True):
            for compiled in (False, True):
                what = (f'Mask R-CNN s-SRB {size[0]}x{size[1]} {mode} '
                        f'{"compiled" if compiled else "eager"} {"AMP" if amp else "fp32"}')
                if not cuda and (compiled or amp):
                    add(what, 'skipped (no CUDA device)')
                    continue
                what += '' if cuda else ' on CPU'
                try:
                    r = detector_row(device, size, mode, compiled, amp, calls=calls)
                    add(what, _step_time(r)
                        + (f', peak {r["peak_mib"]:.0f} MiB' if cuda else ''))
                except Exception as e:  # report and go on: the table is the product
                    add(what, f'FAILED {type(e).__name__}: {str(e).splitlines()[0][:200]}')
    what = (f'Mask R-CNN s-SRB I-LIF T=4 {size[0]}x{size[1]} train eager fp32'
            + ('' if cuda else ' on CPU'))
    try:
        r = detector_row(device, size, 'train', False, False, T=4, calls=calls)
        add(what, _step_time(r) + (f', peak {r["peak_mib"]:.0f} MiB' if cuda
                                   else ' (no CUDA peak memory on CPU)'))
    except Exception as e:
        add(what, f'FAILED {type(e).__name__}: {str(e).splitlines()[0][:200]}')
    what = f'spikes {device.type} float32 vs CPU float64, backbone {spike_size[0]}x{spike_size[1]}'
    add(what, f'{spike_agreement(device, spike_size):.6f} of spike elements equal')
    return rows


def format_rows(rows):
    width = max(len(w) for w, _ in rows)
    return '\n'.join(f'{w:<{width}}  {t}' for w, t in rows)


__all__ = ['run_check', 'format_rows', 'detector_row', 'spike_agreement', 'SIZE']
