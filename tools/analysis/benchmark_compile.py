#!/usr/bin/env python
"""Eager vs fast path vs torch.compile, side by side in one run (issue 23.2), with a record.

    python tools/analysis/benchmark_compile.py   # the issue's models and sizes (hours on 2 cores)
    python tools/analysis/benchmark_compile.py --models backbone-s --size 256x384 --rounds 3
    python tools/analysis/benchmark_compile.py --models backbone-s --modes train --T 1 4 \\
        --with-cp both --routes eager                    # multi-step memory (issue 23.4)
    python tools/analysis/benchmark_compile.py --check --models backbone-s --size 64x64

Each cell (model, size, mode, route, T, with_cp) runs in its own process, the cells
alternating over ``--rounds`` rounds; medians (``mmsnn.analysis.compile_benchmark``). Prints
one table (time, speed-up over eager, cold compile time, peak RSS above the built model) with
the CPU named, and writes a record ``benchmarks/<date>-<commit>-<cpu>.json`` for
``tools/analysis/compare_benchmarks.py`` (``--no-record``: none). ``--check`` instead compares
every route with eager in float64 on one step (spikes equal, outputs and gradients).
Default sizes: backbones 800x1216, Mask R-CNN 800x1344, Semantic FPN 512x512 (``--size``
overrides all).
"""
import argparse
import json
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmsnn.analysis import compile_benchmark as cb  # noqa: E402
from mmsnn.cli.arguments import image_size  # noqa: E402
from mmsnn.utils.errors import MMSNNUserError, run_tool  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--models', nargs='+', default=list(cb.MODELS), choices=list(cb.MODELS))
    p.add_argument('--modes', nargs='+', default=list(cb.MODES), choices=list(cb.MODES))
    p.add_argument('--routes', nargs='+', default=list(cb.ROUTES[:4]), choices=list(cb.ROUTES))
    p.add_argument('--size', type=image_size, help='HxW for every model (default: per model)')
    p.add_argument('--T', type=int, nargs='+', default=[1],
                   help='time steps; T > 1 uses I-LIF neurons in the backbone')
    p.add_argument('--with-cp', choices=('off', 'on', 'both'), default='off',
                   help='activation checkpointing of the backbone (MetaSDT with_cp) and, in '
                   'a detector or segmentor, of its spiking neck and RPN head')
    p.add_argument('--keep-freed-memory', choices=('off', 'on', 'both'), default='off',
                   help="glibc keeps freed memory for reuse in the timed calls (as tools/"
                   "train.py and tools/test.py --keep-freed-memory); the x eager column stays "
                   "against eager with the default allocator")
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--calls', type=int, default=2, help='timed calls per process')
    p.add_argument('--check', action='store_true',
                   help='float64 equality of every route with eager instead of timing')
    p.add_argument('--profile', help='print the top ops of one step of this cell (its name '
                   'as the table prints it) and exit')
    p.add_argument('--baseline', metavar='CHECKOUT',
                   help='also measure every cell in this other checkout of mmsnn (e.g. '
                   '`git worktree add --detach /tmp/base HEAD~3`), alternating with this one '
                   'in every round; its rows are named "@<its commit>"')
    p.add_argument('--records', default=osp.join(REPO, 'benchmarks'))
    p.add_argument('--no-record', action='store_true')
    p.add_argument('--cell', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def cells_of(args):
    cps = dict(off=[False], on=[True], both=[False, True])[args.with_cp]
    allocators = dict(off=[False], on=[True], both=[False, True])[args.keep_freed_memory]
    cells = []
    for model in args.models:
        size = args.size or cb.MODELS[model][1]
        for mode in args.modes:
            for T in args.T:
                for route in args.routes:
                    if not cb.route_applies(route, mode):
                        continue
                    for cp in cps:
                        if cp and (mode != 'train' or 'compiled' in route):
                            continue  # checkpointing only changes an eager train step
                        for keep in allocators:
                            cell = dict(model=model, size=list(size), mode=mode,
                                        route=route, T=T, with_cp=cp)
                            cells.append(dict(cell, keep_freed=True) if keep else cell)
    if args.baseline:
        from mmsnn.analysis.benchmark_record import git_commit
        script = osp.join(args.baseline, 'tools', 'analysis', 'benchmark_compile.py')
        if not osp.isfile(script):
            raise MMSNNUserError(f'--baseline {args.baseline}: no tools/analysis/'
                                 'benchmark_compile.py there; give the root of another mmsnn '
                                 'checkout (git worktree add --detach DIR COMMIT)')
        base = git_commit(args.baseline)
        # (the keep-freed cells only here: an older checkout's child may not know the option)
        cells = [c for cell in cells for c in (
            [cell] + ([] if cell.get('keep_freed') else
                      [dict(cell, checkout=osp.abspath(args.baseline), baseline=base)]))]
    return cells


def main(argv=None):
    args = parse_args(argv)
    if args.cell:  # a measuring child
        spec = json.loads(args.cell)
        calls, profile = spec.pop('calls'), spec.pop('profile')
        res = cb.measure_cell(spec.pop('model'), tuple(spec.pop('size')), **spec, calls=calls,
                              profile=profile)
        if res['profile']:
            print(res['profile'])
        print(json.dumps(dict(res, profile=None)))
        return 0
    from mmsnn.utils.machine import cpu_description
    cpu = cpu_description()
    cells = cells_of(args)
    if not cells:
        raise MMSNNUserError('no cell to measure: the fast routes are inference only; add '
                             '--modes infer or a route without fast')
    if args.check:
        print(f'float64 equality with eager, CPU: {cpu}')
        for c in cells:
            if c['route'] == 'eager' or c['with_cp'] or c.get('baseline') or c.get('keep_freed'):
                continue
            res = cb.check_equal(c['model'], tuple(c['size']), c['mode'], c['route'], c['T'])
            print(f'{cb.cell_name(**c):<52} spikes {res["spikes"]} '
                  f'(compared {res["spikes_compared"]}), differing spike elements '
                  f'{res["spike_mismatch"]}, output rel. err {res["output_err"]:.1e}, '
                  f'grad rel. err {res["grad_err"]:.1e}')
        return 0
    if args.profile:
        match = [c for c in cells if cb.cell_name(**c) == args.profile]
        if not match:
            raise MMSNNUserError(f'--profile {args.profile!r} names no cell; one of: '
                                 + '; '.join(cb.cell_name(**c) for c in cells))
        import subprocess
        # the child prints the profiler's table itself: its output goes straight through
        return subprocess.run(cb.child_command(match[0], args.calls, profile=True)).returncode
    from mmsnn.analysis.benchmark_record import git_commit, make_record, write_record
    commit = git_commit(REPO)  # what is measured: the checkout as the run starts
    print(f'{len(cells)} cells x {args.rounds} rounds, each its own process, alternating')
    summary = cb.run_rounds(cells, args.rounds, args.calls)
    print(cb.format_table(summary, cpu))
    if not args.no_record:
        command = 'python tools/analysis/benchmark_compile.py ' + ' '.join(
            sys.argv[1:] if argv is None else argv)
        path = write_record(make_record(cb.figures(summary), command, commit, cpu),
                            args.records)
        print(f'record: {path} (compare: python tools/analysis/compare_benchmarks.py {path})')
    return 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
