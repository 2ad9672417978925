#!/usr/bin/env python
"""Compare a benchmark record with the last earlier record of the same CPU; flag slow-downs.

    python tools/analysis/compare_benchmarks.py                  # newest record in benchmarks/
    python tools/analysis/compare_benchmarks.py benchmarks/X.json --strict --threshold 0.1

Records are the JSON files ``tools/analysis/benchmark_compile.py`` writes under
``benchmarks/`` (:mod:`mmsnn.analysis.benchmark_record`). Every figure present in both
records is printed with its change; one more than ``--threshold`` (default 10%) slower is
flagged. With ``--strict`` a flagged figure makes the exit status 1. Records of other CPUs
are never compared; with none of the same CPU it says so and exits 0.
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

from mmsnn.analysis.benchmark_record import (DEFAULT_THRESHOLD, compare,  # noqa: E402
                                             format_comparison, last_record_of_cpu,
                                             load_record, load_records)
from mmsnn.utils.errors import MMSNNUserError, run_tool  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('record', nargs='?', help='the current run (default: newest in --records)')
    p.add_argument('--records', default=osp.join(REPO, 'benchmarks'),
                   help='folder of earlier records (default: benchmarks/ of the checkout)')
    p.add_argument('--threshold', type=float, default=DEFAULT_THRESHOLD,
                   help='relative slow-down that is flagged (default 0.10)')
    p.add_argument('--strict', action='store_true', help='exit 1 when a figure is flagged')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if not osp.isdir(args.records):
        raise MMSNNUserError(f'no records folder {args.records}; run '
                             f'tools/analysis/benchmark_compile.py first or pass --records')
    records = load_records(args.records)
    if args.record:
        if not osp.isfile(args.record):
            raise MMSNNUserError(f'record {args.record} does not exist; pass a JSON file that '
                                 f'tools/analysis/benchmark_compile.py wrote')
        try:
            current = dict(load_record(args.record), path=osp.abspath(args.record))
        except ValueError as e:
            raise MMSNNUserError(f'{e}; pass a JSON file benchmark_compile.py wrote')
        records = [dict(r, path=osp.abspath(r['path'])) for r in records]
    elif records:
        current = records[-1]
    else:
        raise MMSNNUserError(f'no records in {args.records}; run '
                             f'tools/analysis/benchmark_compile.py first')
    previous = last_record_of_cpu(records, current)
    if previous is None:
        print(f'no earlier record of this CPU ({current["cpu"]}) in {args.records}: '
              f'nothing to compare')
        return 0
    rows, slower = compare(current, previous, args.threshold)
    print(format_comparison(current, previous, rows, slower, args.threshold))
    return 1 if slower and args.strict else 0


if __name__ == '__main__':
    sys.exit(run_tool(main))
