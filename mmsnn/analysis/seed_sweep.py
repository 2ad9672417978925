"""Seed sweep: train and test one config for several seeds under several CPU kernel families.

A short training from scratch can land anywhere between "learned" and "learned nothing"
depending on the seed, and float32 kernels round differently on different CPUs (torch picks
AVX-512, AVX2 or plain kernels at run time; oneDNN picks its own ISA), so one run says little
about what a user on another machine gets. This module runs ``tools/train.py`` then
``tools/test.py`` for every (seed, kernel family) pair, each in its own process (the kernel
choice is read from the environment when torch is imported), and summarises each metric as
min / median / max over the runs.

Each run lives in ``{work_dir}/{family}_seed{seed}/``; a run whose ``result.json`` exists is
read back instead of trained again, so an interrupted sweep continues where it stopped.
"""
import json
import os
import os.path as osp
import statistics
import subprocess
import sys

from ..utils.errors import MMSNNUserError

#: environment of each kernel family. 'native': the widest kernels this CPU has (on this
#: project's machine AVX-512); 'avx2': the kernels an older x86 CPU runs (torch's ATen
#: dispatch, oneDNN's convolutions and MKL's BLAS all capped at AVX2), the same on every x86
#: CPU with AVX2 (the tests' pinned kernels are this family too).
KERNEL_FAMILIES = {
    'native': {},
    'avx2': {'ATEN_CPU_CAPABILITY': 'avx2', 'ONEDNN_MAX_CPU_ISA': 'AVX2', 'MKL_CBWR': 'AVX2'},
}
_FAMILY_KEYS = sorted({k for env in KERNEL_FAMILIES.values() for k in env})


def family_env(family, base=None):
    """``base`` (default ``os.environ``) with the kernel settings of ``family`` and nothing
    left over from another family."""
    if family not in KERNEL_FAMILIES:
        raise MMSNNUserError(f'unknown kernel family {family!r}; choose from '
                             f'{", ".join(KERNEL_FAMILIES)}')
    env = dict(os.environ if base is None else base)
    for key in _FAMILY_KEYS:
        env.pop(key, None)
    env.update(KERNEL_FAMILIES[family])
    return env


def cpu_capability(python, env):
    """The kernel level torch dispatches to under ``env`` (e.g. 'AVX512', 'AVX2'): the check
    that a family's setting took effect on this machine."""
    out = subprocess.run([python, '-c', 'import torch; '
                          'print(torch.backends.cpu.get_cpu_capability())'],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def last_checkpoint(work_dir):
    """The checkpoint mmengine's ``last_checkpoint`` file in ``work_dir`` names."""
    marker = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(marker):
        raise RuntimeError(f'training wrote no {marker}')
    with open(marker) as f:
        return f.read().strip()


def _run(cmd, env, log_path, cwd):
    with open(log_path, 'w') as log:
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd[:3])} ... failed ({proc.returncode}); see {log_path}')


def run_one(config, seed, family, work_dir, repo_root, python=sys.executable,
            train_options=(), test_options=(), base_env=None):
    """Train ``config`` with ``randomness.seed=seed`` under kernel ``family`` and test the
    last checkpoint, with the tools and mmsnn of the checkout ``repo_root``. Returns (and
    writes to ``{run_dir}/result.json``) a dict with the seed, family, the kernel level torch
    used and tools/test.py's metrics."""
    run_dir = osp.join(work_dir, f'{family}_seed{seed}')
    result_path = osp.join(run_dir, 'result.json')
    if osp.isfile(result_path):
        with open(result_path) as f:
            return json.load(f)
    env = family_env(family, base_env)
    env.setdefault('OMP_NUM_THREADS', '1')
    # the tools import the mmsnn of ``repo_root`` (another checkout: an older commit to
    # compare against)
    env['PYTHONPATH'] = os.pathsep.join([repo_root] + ([env['PYTHONPATH']]
                                                      if env.get('PYTHONPATH') else []))
    train_dir = osp.join(run_dir, 'train')
    test_dir = osp.join(run_dir, 'test')
    os.makedirs(run_dir, exist_ok=True)
    # --overwrite: a run dir without result.json holds a run that did not finish
    _run([python, osp.join(repo_root, 'tools', 'train.py'), config, '--work-dir', train_dir,
          '--overwrite', '--cfg-options', f'randomness.seed={seed}', *train_options],
         env, osp.join(run_dir, 'train.log'), repo_root)
    _run([python, osp.join(repo_root, 'tools', 'test.py'), config, last_checkpoint(train_dir),
          '--work-dir', test_dir, *(['--cfg-options', *test_options] if test_options else [])],
         env, osp.join(run_dir, 'test.log'), repo_root)
    with open(osp.join(test_dir, 'metrics.json')) as f:
        metrics = json.load(f)['metrics']
    result = dict(seed=seed, family=family, capability=cpu_capability(python, env),
                  metrics=metrics)
    with open(result_path + '.tmp', 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(result_path + '.tmp', result_path)
    return result


def summarise(results, keys):
    """``{key: dict(n, min, median, max)}`` of each metric over ``results`` (run_one's dicts)."""
    summary = {}
    for key in keys:
        values = [r['metrics'][key] for r in results if key in r['metrics']]
        if values:
            summary[key] = dict(n=len(values), min=min(values),
                                median=statistics.median(values), max=max(values))
    return summary


def format_sweep(results, keys):
    """One line per run, then one min / median / max line per metric."""
    lines = [f'{"family":8} {"seed":>4} {"kernels":8} ' + ' '.join(f'{k:>16}' for k in keys)]
    for r in sorted(results, key=lambda r: (r['family'], r['seed'])):
        lines.append(f'{r["family"]:8} {r["seed"]:>4} {r["capability"]:8} ' + ' '.join(
            f'{r["metrics"].get(k, float("nan")):>16.3f}' for k in keys))
    for key, s in summarise(results, keys).items():
        lines.append(f'{key}: min {s["min"]:.3f}  median {s["median"]:.3f}  '
                     f'max {s["max"]:.3f}  (min-max over {s["n"]} runs)')
    return '\n'.join(lines)
