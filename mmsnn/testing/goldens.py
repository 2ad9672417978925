"""Golden reference outputs stored compactly and losslessly in the repository.

The reference goldens are ``torch.save`` files of nested dicts/lists of tensors (weights,
inputs, outputs). Stored as they are they take 44 MB; this format keeps every value bit for
bit in about 32 MB, so a clone of the project alone carries what its tests need:

- a float64 tensor whose every value is exactly a float32 (weights, inputs, loss weights,
  spike maps) is stored as float32 and widened back to float64 on load (exact both ways);
- each tensor's bytes are byte-shuffled (all first bytes, then all second bytes, ...), which
  puts the slowly varying sign/exponent bytes side by side, then everything is compressed
  with LZMA.

The file is not a pickle: a JSON header describes the tree (dict, list, tuple, str, int,
float, bool, None, tensor) and the tensors' bytes follow, so loading it runs no code.

Pack: ``python tools/misc/pack_goldens.py SRC.pt ... --out DIR``; load: :func:`load_golden`,
which also reads plain ``.pt`` files (``MMSNN_*_GOLDENS`` may name either).
"""
import json
import lzma
import struct

import numpy as np
import torch

MAGIC = b'MMSNN-GOLDEN-1\n'
SUFFIX = '.golden.xz'


def _encode(x, blobs):
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, dict):
        return {'__items__': [[_encode(k, blobs), _encode(v, blobs)] for k, v in x.items()]}
    if isinstance(x, (list, tuple)):
        return {'__list__' if isinstance(x, list) else '__tuple__':
                [_encode(v, blobs) for v in x]}
    if torch.is_tensor(x):
        x = x.detach().cpu().contiguous()
        widen = x.dtype == torch.float64 and bool((x.float().double() == x).all())
        stored = x.float() if widen else x
        flat = stored.reshape(-1).numpy()
        shuffled = flat.view(np.uint8).reshape(-1, flat.itemsize).T.tobytes()
        blobs.append(shuffled)
        return {'__tensor__': len(blobs) - 1, 'dtype': str(stored.dtype).split('.')[-1],
                'shape': list(x.shape), 'float64': widen}
    raise TypeError(f'golden files hold dict/list/tuple/str/int/float/bool/None/tensor, '
                    f'not {type(x).__name__}')


def _decode(node, blobs):
    if not isinstance(node, dict):
        return node
    if '__items__' in node:
        return {_decode(k, blobs): _decode(v, blobs) for k, v in node['__items__']}
    if '__list__' in node:
        return [_decode(v, blobs) for v in node['__list__']]
    if '__tuple__' in node:
        return tuple(_decode(v, blobs) for v in node['__tuple__'])
    dtype = getattr(torch, node['dtype'])
    itemsize = torch.empty((), dtype=dtype).element_size()
    raw = np.frombuffer(blobs[node['__tensor__']], np.uint8)
    unshuffled = np.ascontiguousarray(raw.reshape(itemsize, -1).T).reshape(-1)
    t = (torch.frombuffer(bytearray(unshuffled.tobytes()), dtype=dtype) if unshuffled.size
         else torch.empty(0, dtype=dtype)).reshape(node['shape'])
    return t.double() if node['float64'] else t


def pack_golden(obj, path):
    """Write ``obj`` (a golden tree) to ``path`` in the compact lossless format."""
    blobs = []
    header = json.dumps(_encode(obj, blobs), allow_nan=True).encode()
    sizes = [len(b) for b in blobs]
    body = json.dumps(sizes).encode()
    payload = struct.pack('<QQ', len(header), len(body)) + header + body + b''.join(blobs)
    with open(path, 'wb') as f:
        f.write(MAGIC)
        f.write(lzma.compress(payload, preset=9 | lzma.PRESET_EXTREME))


def load_golden(path, map_location='cpu'):
    """Read a golden file: the compact format of :func:`pack_golden` or a ``torch.save``
    file (loaded with ``weights_only=True``: golden files hold data only)."""
    with open(path, 'rb') as f:
        head = f.read(len(MAGIC))
        if head != MAGIC:
            f.seek(0)
            return torch.load(f, map_location=map_location, weights_only=True)
        payload = lzma.decompress(f.read())
    n_header, n_sizes = struct.unpack_from('<QQ', payload)
    start = 16
    header = json.loads(payload[start:start + n_header])
    start += n_header
    sizes = json.loads(payload[start:start + n_sizes])
    start += n_sizes
    view = memoryview(payload)
    blobs = []
    for size in sizes:
        blobs.append(view[start:start + size])
        start += size
    return _decode(header, blobs)
