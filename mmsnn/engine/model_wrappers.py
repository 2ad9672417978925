"""Model wrappers of mmsnn (registered in mmengine's root ``MODEL_WRAPPERS``).

The runner wraps a distributed model with ``device_ids=[LOCAL_RANK]``, which torch's DDP
rejects for a CPU module; :class:`CPUDistributedDataParallel` drops it (``mmsnn.utils.runtime``
names it in the config of a CPU run).
"""
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that accepts a CPU module (gloo backend)."""

    def __init__(self, module, detect_anomalous_params=False, device_ids=None, **kwargs):
        on_cpu = all(not p.is_cuda for p in module.parameters())
        if on_cpu:
            device_ids = None
            kwargs.pop('output_device', None)
        super().__init__(module=module, detect_anomalous_params=detect_anomalous_params,
                         device_ids=device_ids, **kwargs)


__all__ = ['CPUDistributedDataParallel']
