"""Benchmark records: one small JSON file per benchmark run, and the check that no figure got
slower than the last record of the same CPU.

A record (``benchmarks/<date>-<commit>-<cpu-slug>.json``) holds what is needed to compare two
runs: the commit measured, the CPU (:func:`mmsnn.utils.machine.cpu_description`: model, the
ISA flags that pick the float32 kernels, forced kernel settings), the torch version, the
command, and ``figures``: ``{name: value}`` where every value is a cost -- seconds or MiB,
lower is better. Runs on different CPUs are never compared: the same code runs at different
speeds there (a regression check across CPUs would flag the machine, not the code).
"""
import datetime
import glob
import json
import os
import os.path as osp
import re
import subprocess

#: a figure this much slower (relative) than the last record's is flagged
DEFAULT_THRESHOLD = 0.10
RECORD_FIELDS = ('date', 'commit', 'cpu', 'torch', 'command', 'figures')


def git_commit(repo):
    """Short commit of the checkout ``repo`` (``+dirty`` with uncommitted changes), or
    'unknown' outside a git checkout (an installed wheel)."""
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=repo, text=True,
                                capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'],
                               cwd=repo, text=True, capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return commit + ('+dirty' if dirty else '')


def cpu_slug(cpu):
    """File-name part for a CPU description: lower case, runs of other characters as '-'."""
    return re.sub(r'[^a-z0-9]+', '-', cpu.lower()).strip('-')[:60]


def make_record(figures, command, commit, cpu=None, torch_version=None, date=None):
    """A record of one run; ``figures`` maps names to costs (seconds or MiB)."""
    if cpu is None:
        from mmsnn.utils.machine import cpu_description
        cpu = cpu_description()
    if torch_version is None:
        import torch
        torch_version = torch.__version__
    date = date or datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    return dict(date=date, commit=commit, cpu=cpu, torch=torch_version, command=command,
                figures={str(k): float(v) for k, v in figures.items()})


def write_record(record, folder):
    """Write ``record`` as ``<folder>/<date>-<commit>-<cpu-slug>.json``; returns the path."""
    os.makedirs(folder, exist_ok=True)
    stamp = record['date'].replace(':', '').replace('-', '')
    commit = record['commit'].replace('+', '-')
    path = osp.join(folder, f'{stamp}-{commit}-{cpu_slug(record["cpu"])}.json')
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write('\n')
    os.replace(tmp, path)  # a reader never sees half a record
    return path


def load_record(path):
    with open(path) as f:
        record = json.load(f)
    missing = [k for k in RECORD_FIELDS if k not in record]
    if missing:
        raise ValueError(f'{path} is not a benchmark record: no {", ".join(missing)}')
    return record


def load_records(folder):
    """Every record under ``folder``, oldest first (by their ``date``)."""
    records = [dict(load_record(p), path=p)
               for p in glob.glob(osp.join(folder, '*.json'))]
    return sorted(records, key=lambda r: r['date'])


def last_record_of_cpu(records, current):
    """The newest record older than ``current`` measured on ``current``'s CPU, or None."""
    same = [r for r in records if r['cpu'] == current['cpu'] and r['date'] < current['date']
            and r is not current]
    return same[-1] if same else None


def compare(current, previous, threshold=DEFAULT_THRESHOLD):
    """Figures present in both records: ``[(name, previous, current, change)]`` with
    ``change = current / previous - 1`` (positive = slower), and the names of those slower
    than ``threshold``. Records of different CPUs are not compared (ValueError)."""
    if current['cpu'] != previous['cpu']:
        raise ValueError(f'records of different CPUs are not comparable: '
                         f'{previous["cpu"]!r} vs {current["cpu"]!r}')
    rows, slower = [], []
    for name, now in current['figures'].items():
        before = previous['figures'].get(name)
        if before is None or before <= 0:
            continue
        change = now / before - 1.0
        rows.append((name, before, now, change))
        if change > threshold:
            slower.append(name)
    return rows, slower


def format_comparison(current, previous, rows, slower, threshold=DEFAULT_THRESHOLD):
    lines = [f'{current["commit"]} ({current["date"]}) against {previous["commit"]} '
             f'({previous["date"]}), {current["cpu"]}',
             f'{"figure":<44} {"before":>10} {"now":>10} {"change":>8}']
    for name, before, now, change in rows:
        flag = '  SLOWER' if name in slower else ''
        lines.append(f'{name:<44} {before:10.4g} {now:10.4g} {change:+8.1%}{flag}')
    lines.append(f'{len(slower)} figure(s) more than {threshold:.0%} slower'
                 + (f': {", ".join(slower)}' if slower else ''))
    return '\n'.join(lines)


__all__ = ['DEFAULT_THRESHOLD', 'git_commit', 'cpu_slug', 'make_record', 'write_record',
           'load_record', 'load_records', 'last_record_of_cpu', 'compare',
           'format_comparison']
