"""What ``tools/train.py`` and ``tools/test.py`` need to run the same configs on CPU and GPU.

mmengine 0.10.7 assumes a GPU in three places; each has a small CPU counterpart:

* ``AmpOptimWrapper`` asserts CUDA. :class:`~mmsnn.engine.optim_wrappers.CPUAmpOptimWrapper`
  runs the forward pass under ``torch.autocast('cpu', bfloat16)`` with no loss scaling.
* The ``pytorch`` launcher calls ``torch.cuda.set_device``. :func:`init_cpu_distributed` opens
  the gloo process group from torchrun's environment first, so mmengine skips its own init.
* The runner wraps the model with ``device_ids=[LOCAL_RANK]``, which torch's DDP rejects for a
  CPU module. :class:`~mmsnn.engine.model_wrappers.CPUDistributedDataParallel` drops
  ``device_ids`` for CPU modules.

The two wrappers are registered engine parts (``mmsnn/engine``); this module only names them
in the config.

:func:`configure_runtime` applies these to a config (and picks NCCL or gloo) and
:func:`start_distributed` opens the process group; the tools call both, and
:func:`stop_distributed` closes it when the run is over.
"""
import os

import torch

from .errors import MMSNNUserError

_TORCHRUN_ENV = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')


def init_cpu_distributed(launcher, backend='gloo', **kwargs):
    """Open the process group of a CPU run started by torchrun (``--launcher pytorch``)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return
    if launcher != 'pytorch':
        raise MMSNNUserError(
            f'--launcher {launcher} needs GPUs (mmengine\'s {launcher} launcher picks a CUDA '
            'device per process), and this machine has none.\n'
            '  fix: start CPU runs with torchrun: tools/dist_train.sh CONFIG NPROC '
            '(it passes --launcher pytorch), or use --launcher none.')
    dist.init_process_group(backend=backend, **kwargs)


def check_launcher_env(launcher):
    """``--launcher pytorch`` outside torchrun would fail with ``KeyError: 'RANK'``."""
    if launcher != 'pytorch':
        return
    missing = [k for k in _TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise MMSNNUserError(
            f'--launcher pytorch expects the environment torchrun sets up, but '
            f'{", ".join(missing)} {"is" if len(missing) == 1 else "are"} not set.\n'
            '  fix: start distributed runs with tools/dist_train.sh CONFIG NPROC [args] '
            '(or tools/dist_test.sh CONFIG CHECKPOINT NPROC), or drop --launcher for one '
            'process.')


def configure_runtime(cfg, launcher='none', amp=False):
    """Set launcher, distributed backend, model wrapper and AMP in ``cfg`` for this machine.

    Returns the distributed backend ('nccl' or 'gloo'), or None for one process.
    """
    cuda = torch.cuda.is_available()
    if amp:
        _enable_amp(cfg, cuda)
    elif not cuda and cfg.get('optim_wrapper', {}).get('type') == 'AmpOptimWrapper':
        raise MMSNNUserError(
            'the config uses optim_wrapper.type=\'AmpOptimWrapper\', which mmengine runs only '
            'on a GPU, and this machine has none.\n'
            '  fix: pass --amp (bf16 autocast on CPU) or '
            '--cfg-options optim_wrapper.type=OptimWrapper.')

    cfg.launcher = launcher
    if launcher == 'none':
        return None
    check_launcher_env(launcher)
    if not cuda and launcher != 'pytorch':
        init_cpu_distributed(launcher)  # raises: only torchrun works without GPUs
    backend = 'nccl' if cuda else 'gloo'
    if cfg.get('env_cfg') is None:
        cfg.env_cfg = {}
    if cfg.env_cfg.get('dist_cfg') is None:
        cfg.env_cfg.dist_cfg = {}
    cfg.env_cfg.dist_cfg.backend = backend
    if not cuda:
        if cfg.get('sync_bn'):
            raise MMSNNUserError(
                f'sync_bn={cfg.sync_bn!r} synchronises BatchNorm across GPUs, and this machine '
                'has none.\n  fix: drop sync_bn for CPU runs (--cfg-options sync_bn=None).')
        wrapper = cfg.get('model_wrapper_cfg') or {}
        if wrapper.get('type', 'MMDistributedDataParallel') == 'MMDistributedDataParallel':
            wrapper = dict(wrapper)
            wrapper['type'] = 'CPUDistributedDataParallel'
            wrapper.setdefault('broadcast_buffers', False)
            wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
            cfg.model_wrapper_cfg = wrapper
    return backend


def start_distributed(cfg):
    """On CPU, open the gloo process group before the runner (which would ask for CUDA).

    Call it after the checks and right before ``Runner.from_cfg``; on GPUs mmengine does it.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        return
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    backend = dist_cfg.pop('backend', 'gloo')
    init_cpu_distributed(launcher, backend, **dist_cfg)


def stop_distributed():
    """Close the process group at the end of a finished run (mmengine never does).

    Without it each process exits with gloo's worker threads still alive, and the interpreter's
    teardown then sometimes aborts the process (``terminate called without an active
    exception``, SIGABRT): torchrun reports a failed run after a complete one. The barrier lets
    rank 0 finish writing its last checkpoint before any rank leaves.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _enable_amp(cfg, cuda):
    optim = cfg.get('optim_wrapper')
    if optim is None:
        raise MMSNNUserError('--amp needs an optim_wrapper in the config (training only).')
    if cuda:
        if optim.get('type') == 'AmpOptimWrapper':
            print('note: the config already uses AmpOptimWrapper; --amp changes nothing')
            return
        optim['type'] = 'AmpOptimWrapper'
        optim['loss_scale'] = 'dynamic'
    else:  # bf16 autocast needs no loss scaling
        optim['type'] = 'CPUAmpOptimWrapper'
        optim['dtype'] = 'bfloat16'
        optim.pop('loss_scale', None)


def autocast_on(device_type):
    """Whether autocast (AMP) is on for ``device_type``. mmsnn's autograd functions (the
    convs of spikes, the depthwise conv) step aside under it: autocast casts a conv's inputs
    where autograd records the casts, inside a function it would not, and the backward would
    meet mixed dtypes."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return (torch.is_autocast_cpu_enabled() if device_type == 'cpu'
                else torch.is_autocast_enabled())


def __getattr__(name):
    # deprecated names kept for one release (PEP 562: resolved, and warned about, on use)
    moved = {'CPUAmpOptimWrapper': 'optim_wrappers', 'CPUDistributedDataParallel': 'model_wrappers'}
    if name in moved:
        import importlib
        from .deprecation import warn_moved
        new = f'mmsnn.engine.{moved[name]}'
        warn_moved(f'mmsnn.utils.runtime.{name}', f'{new}.{name}')
        return getattr(importlib.import_module(new), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
