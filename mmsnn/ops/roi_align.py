"""RoIAlign (average pooling) as two small matrix products per RoI, for the inference fast path.

mmcv's CPU ``RoIAlign`` kernel is single-threaded and walks the feature map channel by channel;
at 800x1344 it is a fifth of the fused Mask R-CNN's time. With ``pool_mode='avg'`` each output
bin is the mean over a ``grid_h x grid_w`` Cartesian grid of sample points of a bilinear
interpolation, and everything about a sample factorises into a y part and an x part:

* the bilinear weight of a sample is ``wy(row) * wx(col)``;
* the border rules act on each coordinate alone (a sample with ``y < -1`` or ``y > H`` -- or
  the same in x -- contributes 0 but is still counted; ``y <= 0`` is moved to 0; a sample whose
  lower row is ``>= H - 1`` takes row ``H - 1`` with weight 1);
* the divisor is ``grid_h * grid_w``.

So for one RoI and channel ``c``, ``out[c] = Ay @ F[c] @ Ax^T`` where row ``p`` of ``Ay``
(``[out_h, H]``) holds the summed y-weights of bin row ``p``'s samples divided by ``grid_h``,
and ``Ax`` (``[out_w, W]``) likewise in x. Only the rows and columns a RoI touches are non-zero.
With the map channels last, the rows a RoI touches, cut to its columns, are one strided matrix
``[rows, cols * C]`` that BLAS reads in place: per RoI one GEMM ``Ay @ window`` (no gather),
then for RoIs of equal (padded) window width one batched GEMM applies ``Ax``. Sample positions
are computed with the same operations in the same order and dtype as mmcv's kernel, so which
samples fall inside the map and which rows they hit are the same; only the summation order
differs (float64: ~1e-15, float32: ~1e-7 relative). On CUDA (where mmcv's kernel itself
contracts multiply-adds) the results agree to rounding.

``SeparableRoIAlign`` is an mmcv ``RoIAlign`` that takes this path in no-grad mode for float32 /
float64 input and mmcv's own op otherwise (training, ERF probes: autograd sees mmcv's op).
``swap_roi_align(model)`` puts it in place of every average-pooling ``RoIAlign`` of a model;
``mmsnn.deploy.convert_for_inference`` calls it.
"""
import torch
from mmcv.ops import RoIAlign

#: elements of one chunk's y-reduced windows ``[RoIs, out_h, width * C]`` (the buffer the two
#: GEMMs pass on; float32: 4 MiB per 2**20)
CHUNK_ELEMENTS = 2 ** 21

def _axis_weights(start, bin_size, grid, out_size, size, dtype):
    """Per RoI, the sample rows of one axis and their weights, as mmcv's kernel computes them.

    Args:
        start, bin_size: ``[K]`` RoI start and bin size on this axis (input dtype).
        grid: ``[K]`` int64 samples per bin on this axis (may be <= 0: no samples).
        out_size: bins on this axis. size: feature map extent on this axis.

    Returns:
        low, high: ``[K, out_size, S]`` int64 rows (columns) of the two bilinear neighbours;
        w_low, w_high: their weights divided by ``grid`` (0 for padding samples ``s >= grid``
        and for samples outside ``[-1, size]``); lo, hi: ``[K]`` first and last row touched.
    """
    n_samples = max(int(grid.max()), 1)
    idx = torch.arange(n_samples, dtype=dtype, device=start.device) + 0.5
    bins = torch.arange(out_size, dtype=dtype, device=start.device)
    grid_t = grid.clamp(min=1).to(dtype)
    # mmcv: start + p * bin + (s + .5) * bin / grid, evaluated left to right in the input dtype
    pos = ((start[:, None] + bins[None, :] * bin_size[:, None])[:, :, None]
           + (idx[None, :] * bin_size[:, None] / grid_t[:, None])[:, None, :])
    used = (torch.arange(n_samples, device=start.device)[None, :] < grid[:, None])[:, None, :]
    used = used & (pos >= -1) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.long()  # truncation, pos >= 0
    at_end = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(pos), pos - low.to(dtype))
    zero = torch.zeros_like(pos)
    w_high = torch.where(used, frac, zero) / grid_t[:, None, None]
    w_low = torch.where(used, 1 - frac, zero) / grid_t[:, None, None]
    big = torch.full_like(low, size)
    lo = torch.where(used, low, big).flatten(1).amin(1)
    hi = torch.where(used, high, torch.full_like(high, -1)).flatten(1).amax(1)
    empty = hi < 0  # no sample inside the map: a 1-row window, all weights 0
    lo = torch.where(empty, torch.zeros_like(lo), lo)
    hi = torch.where(empty, torch.zeros_like(hi), hi)
    return low, high, w_low, w_high, lo, hi


def _window_matrix(low, high, w_low, w_high, origin, extent):
    """``[K, out, extent]``: the summed weights in window coordinates (RoI ``k``'s window starts
    at ``origin[k]``); padding samples have weight 0 and are sent to column 0."""
    k, out, s = low.shape
    mat = w_low.new_zeros(k, out, extent)
    o = origin[:, None, None]
    for rows, w in ((low, w_low), (high, w_high)):
        local = rows - o
        inside = (local >= 0) & (local < extent)
        mat.scatter_add_(2, torch.where(inside, local, torch.zeros_like(local)),
                         torch.where(inside, w, torch.zeros_like(w)))
    return mat


def _padded_extent(span, size):
    """Window width for a RoI spanning ``span`` columns: ``span`` rounded up to a coarse ladder
    (exact up to 8, then steps of 2 up to 16, 4 up to 32, ...), at most ``size``. RoIs of one
    width share one batched product; the ladder bounds the padding to < 25 %."""
    step = (2 ** ((span - 1).clamp(min=1).float().log2().floor() - 2)).long().clamp(min=1)
    return (((span + step - 1) // step) * step).clamp(max=size)


def _chunks(keys, budget_rois):
    """Runs of equal ``keys`` (a sorted list), each cut into pieces of at most ``budget_rois``
    RoIs. Returns ``(start, stop)`` pairs."""
    runs, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start] or i - start == budget_rois[start]:
            runs.append((start, i))
            start = i
    return runs


def separable_roi_align(input, rois, output_size, spatial_scale=1.0, sampling_ratio=0,
                        aligned=True, chunk_elements=CHUNK_ELEMENTS):
    """mmcv's ``roi_align(..., pool_mode='avg')`` forward, computed as ``Ay @ F @ Ax^T`` per RoI.

    Args:
        input: ``[N, C, H, W]`` float features (any strides, any device).
        rois: ``[K, 5]`` ``(batch index, x1, y1, x2, y2)`` in image coordinates.
        output_size: int or ``(out_h, out_w)``.
        spatial_scale: image -> feature map scale (rounded to float32, as mmcv passes it).
        sampling_ratio: samples per bin and axis; 0 = ``ceil(roi size / output size)``.
        aligned: subtract half a pixel (``True``) or clamp the RoI size to >= 1 (legacy).
        chunk_elements: bound on the elements of one chunk's y-reduced windows.

    Returns:
        ``[K, C, out_h, out_w]`` in the input dtype. Without gradient.
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, c, h, w = input.shape
    k = rois.shape[0]
    dtype, device = input.dtype, input.device
    if h == 0 or w == 0:
        raise ValueError(f'separable_roi_align: empty feature map {tuple(input.shape)}; '
                         'give it a map with H, W >= 1')
    out = input.new_empty(k, c, out_h, out_w)
    if k == 0 or c == 0:
        return out
    rois = rois.to(dtype)
    # mmcv hands spatial_scale to its kernel as a C float, then casts it to the input dtype
    scale = torch.tensor(spatial_scale, dtype=torch.float32).item()
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, i] * scale - offset for i in range(1, 5))
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    bin_h, bin_w = roi_h / out_h, roi_w / out_w
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.long, device=device)
        grid_w = grid_h
    else:  # ceilf(roi_size / out_size): the quotient in the input dtype, rounded to float
        grid_h = bin_h.float().ceil().long().clamp(min=0)
        grid_w = bin_w.float().ceil().long().clamp(min=0)
    ys = _axis_weights(y1, bin_h, grid_h, out_h, h, dtype)
    xs = _axis_weights(x1, bin_w, grid_w, out_w, w, dtype)
    # channels last: a RoI's window is then `span_h` rows of `width * C` contiguous numbers,
    # a strided matrix that BLAS reads in place (free if the input already is channels last)
    fmap = input.permute(0, 2, 3, 1).contiguous()
    lo_y, span_h = ys[4], ys[5] - ys[4] + 1
    ay = _window_matrix(*ys[:4], lo_y, int(span_h.max()))  # [K, out_h, max span_h]
    # window widths rounded up to a ladder (kept inside the map), RoIs of one width together
    ext_w = _padded_extent(xs[5] - xs[4] + 1, w)
    ox = torch.minimum(xs[4], w - ext_w)
    ax = _window_matrix(*xs[:4], ox, int(ext_w.max()))  # [K, out_w, max ext_w]
    order = torch.argsort(ext_w, stable=True)
    ext_s = ext_w[order].tolist()
    per_chunk = (chunk_elements // (ext_w * c * out_h)).clamp(min=1)[order].tolist()
    runs = _chunks(ext_s, per_chunk)
    b_s, y_s, h_s, x_s = (t[order].tolist() for t in (rois[:, 0].long(), lo_y, span_h, ox))
    ay, ax = ay[order], ax[order]
    # two buffers reused by every chunk (fresh pages per chunk would cost more than the maths)
    buf = input.new_empty(max((stop - start) * ext_s[start] for start, stop in runs)
                          * out_h * c)
    res = input.new_empty(max(stop - start for start, stop in runs) * out_h * out_w * c)
    for start, stop in runs:
        kk, win_w = stop - start, ext_s[start]
        rows = buf[:kk * out_h * win_w * c].view(kk, out_h, win_w * c)
        for i in range(start, stop):  # y: [out_h, span_h] @ [span_h, win_w * C], in place
            window = fmap[b_s[i], y_s[i]:y_s[i] + h_s[i], x_s[i]:x_s[i] + win_w]
            torch.mm(ay[i, :, :h_s[i]], window.view(h_s[i], win_w * c), out=rows[i - start])
        # x: [out_w, win_w] @ [win_w, C] for every RoI and bin row
        weights = ax[start:stop, None, :, :win_w].expand(kk, out_h, out_w, win_w)
        pooled = res[:kk * out_h * out_w * c].view(kk, out_h, out_w, c)
        torch.bmm(weights.reshape(kk * out_h, out_w, win_w), rows.view(kk * out_h, win_w, c),
                  out=pooled.view(kk * out_h, out_w, c))
        out.index_copy_(0, order[start:stop], pooled.permute(0, 3, 1, 2))
    return out


class SeparableRoIAlign(RoIAlign):
    """mmcv's ``RoIAlign`` whose no-grad average pooling of float32/float64 features runs as
    batched matrix products (``separable_roi_align``); same arguments, same results.

    It is mmcv's op unchanged with gradients enabled, for input not on the CPU (mmcv's CUDA
    kernel does all RoIs in one launch; the loop here syncs with the host per chunk), for
    other dtypes, ``pool_mode='max'``,
    ``use_torchvision``, aligned RoIs of negative size (which mmcv's CPU kernel rejects), and
    when the RoIs take fewer bilinear samples than ``min_samples_per_pixel`` times the map's
    pixels (then mmcv's kernel is cheaper than putting the map channels last).
    """

    #: below this many samples (all RoIs, bins and channels) per map element, mmcv's kernel
    #: costs less than the channels-last copy of the map (measured at 800x1344 on CPU)
    min_samples_per_pixel = 0.25

    @classmethod
    def from_roi_align(cls, layer):
        """A ``SeparableRoIAlign`` with the settings of the mmcv ``RoIAlign`` ``layer``."""
        return cls(layer.output_size, layer.spatial_scale, layer.sampling_ratio,
                   layer.pool_mode, layer.aligned, layer.use_torchvision)

    def forward(self, input, rois):
        if (torch.is_grad_enabled() or self.pool_mode != 'avg' or self.use_torchvision
                or input.device.type != 'cpu'  # on a GPU mmcv's one fused kernel is faster
                or input.dtype not in (torch.float32, torch.float64) or not len(rois)):
            return super().forward(input, rois)
        size = (rois[:, 3:5] - rois[:, 1:3]) * self.spatial_scale  # (w, h) on the map
        if self.aligned and bool((size < 0).any()):
            return super().forward(input, rois)
        out_hw = size.new_tensor(self.output_size[::-1])
        grid = (torch.full_like(size, self.sampling_ratio) if self.sampling_ratio > 0
                else (size.clamp(min=0 if self.aligned else 1) / out_hw).ceil())
        samples = float(grid.prod(1).sum()) * self.output_size[0] * self.output_size[1]
        n, _, h, w = input.shape
        if samples < self.min_samples_per_pixel * n * h * w:
            return super().forward(input, rois)
        return separable_roi_align(input, rois, self.output_size, self.spatial_scale,
                                   self.sampling_ratio, self.aligned)


def swap_roi_align(model):
    """Replace (in place) every mmcv ``RoIAlign`` with ``pool_mode='avg'`` inside ``model`` by a
    ``SeparableRoIAlign`` with the same settings. Returns the names of the replaced modules."""
    swapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is RoIAlign and child.pool_mode == 'avg':
                module._modules[child_name] = SeparableRoIAlign.from_roi_align(child)
                swapped.append(f'{name}.{child_name}' if name else child_name)
    return swapped


__all__ = ['SeparableRoIAlign', 'separable_roi_align', 'swap_roi_align']
