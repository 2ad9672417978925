"""What a timing was measured on. float32 kernels and their speed differ between CPUs of the
same machine kind (AVX2 only, AVX-512, AMX), so every figure names the CPU beside it."""
import platform

#: instruction-set flags that change which float32 kernels oneDNN / ATen / NNPACK pick
ISA_FLAGS = ('avx2', 'avx512f', 'avx512_bf16', 'avx512_vnni', 'amx_tile', 'amx_bf16')


def cpu_description():
    """'<model name> [avx2 avx512f ...]' from /proc/cpuinfo (platform names elsewhere), with
    the torch kernel settings that override the CPU's own choice when they are set."""
    import os
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                key = key.strip()
                if key == 'model name':
                    model = value.strip()
                elif key == 'flags':
                    flags = set(value.split())
                if key == 'flags' and model:
                    break
    except OSError:
        pass
    text = model + (f' [{" ".join(f for f in ISA_FLAGS if f in flags)}]' if flags else '')
    forced = [f'{k}={os.environ[k]}' for k in ('ATEN_CPU_CAPABILITY', 'ONEDNN_MAX_CPU_ISA')
              if os.environ.get(k)]
    return text + (f' ({", ".join(forced)})' if forced else '')
