"""``EnergyReport``: the per-layer and total numbers, rendered as a table, JSON, CSV and
a figure."""
import csv
import json
import os
import os.path as osp

from ...utils.atomic import atomic_open


class EnergyReport:
    """Per-layer and total FLOPs, SOPs, MACs and energy per image.

    Attributes:
        layers (list[dict]): one dict per synaptic op, in forward order: ``name``, ``type``
            ('Conv2d', 'Conv1d', 'Linear', 'matmul', ...), ``group``, ``flops`` (MACs per
            image per time step), ``rate`` (c, 0..D; None for a dense layer), ``r`` (c / D),
            ``nonzero`` (share of non-zero input elements), ``spike_driven``,
            ``input_from`` (the op that produced the input), ``T``, ``D``, ``sops``,
            ``macs``, ``energy_mj``, ``share`` (of the total energy).
        totals (dict): ``flops``, ``sops``, ``macs``, ``energy_mj`` (E_SNN),
            ``energy_ann_mj``, ``ann_snn_ratio``, ``mean_rate`` (sum SOPs / sum T * FLOPs of
            the spike-driven layers), ``violations`` (layers that should take spikes and do
            not) and ``groups`` (the same sums per group: backbone stages, backbone, neck,
            rpn_head, roi_head and its sub-heads, decode_head, ...).
        meta (dict): constants, conventions, number of images, input shapes, T, D.
    """

    CSV_FIELDS = ('name', 'type', 'group', 'spike_driven', 'input_from', 'T', 'D', 'rate', 'r',
                  'nonzero', 'flops', 'sops', 'macs', 'energy_mj', 'share', 'calls')

    def __init__(self, layers, meta, e_mac):
        self.layers = layers
        self.meta = meta
        total_mj = sum(lay['energy_mj'] for lay in layers)
        for lay in layers:
            lay['share'] = lay['energy_mj'] / total_mj if total_mj else 0.0
        self.totals = self._sums(layers, e_mac)
        self.totals['violations'] = [
            dict(name=lay['name'], input_from=lay['input_from'], reason=lay['reason'])
            for lay in layers if not lay['spike_driven'] and not lay['encoding']]
        groups = {}
        for lay in layers:
            keys = [lay['group']]
            if '.' in lay['group']:
                keys.append(lay['group'].split('.')[0])
            for key in keys:
                groups.setdefault(key, []).append(lay)
        self.totals['groups'] = {k: self._sums(v, e_mac) for k, v in groups.items()}

    @staticmethod
    def _sums(layers, e_mac):
        flops = sum(lay['flops'] for lay in layers)
        sops = sum(lay['sops'] for lay in layers)
        energy = sum(lay['energy_mj'] for lay in layers)
        tflops = sum(lay['T'] * lay['flops'] for lay in layers if lay['rate'] is not None)
        ann = e_mac * flops * 1e-9
        return dict(flops=flops, sops=sops, macs=sum(lay['macs'] for lay in layers),
                    energy_mj=energy, energy_ann_mj=ann,
                    ann_snn_ratio=ann / energy if energy else None,
                    mean_rate=sops / tflops if tflops else None)

    # ------------------------------------------------------------------ output
    def summary(self):
        """A few lines: totals, per-group energy and the spike-driven verdict."""
        t, m = self.totals, self.meta
        lines = [f'energy per image ({m["num_images"]} image(s), E_MAC {m["e_mac_pj"]} pJ, '
                 f'E_AC {m["e_ac_pj"]} pJ, T {m["T"]}, D {m["D"]}):',
                 f'  FLOPs {t["flops"] / 1e9:.4f} G   SOPs {t["sops"] / 1e9:.4f} G   '
                 f'MACs (dense) {t["macs"] / 1e9:.4f} G   mean rate {_fmt(t["mean_rate"], 3)}',
                 f'  E_SNN {t["energy_mj"]:.4f} mJ   E_ANN {t["energy_ann_mj"]:.4f} mJ   '
                 f'E_ANN/E_SNN {_fmt(t["ann_snn_ratio"], 2)}']
        for group, g in self.totals['groups'].items():
            lines.append(f'    {group:<22} FLOPs {g["flops"] / 1e9:9.4f} G  '
                         f'SOPs {g["sops"] / 1e9:9.4f} G  MACs {g["macs"] / 1e9:8.4f} G  '
                         f'E {g["energy_mj"]:8.4f} mJ')
        if t['violations']:
            lines.append(f'  NOT spike-driven: {len(t["violations"])} layer(s) take non-spike '
                         'input (charged as MACs):')
            lines += [f'    {v["name"]} <- {v["input_from"]}' for v in t['violations']]
        else:
            lines.append('  spike-driven: every synaptic layer but the encoding layer takes '
                         'spikes')
        return '\n'.join(lines)

    def table(self):
        """The per-layer table followed by :meth:`summary`."""
        head = (f'{"layer":<48} {"type":<8} {"spk":<3} {"T":>2} {"rate":>6} {"r":>5} '
                f'{"nz":>5} {"FLOPs":>11} {"SOPs":>11} {"MACs":>11} {"mJ":>9} {"share":>6}')
        rows = [head, '-' * len(head)]
        for lay in self.layers:
            rows.append(
                f'{lay["name"][-48:]:<48} {lay["type"][:8]:<8} '
                f'{"y" if lay["spike_driven"] else "N":<3} {lay["T"]:>2} '
                f'{_fmt(lay["rate"], 3):>6} {_fmt(lay["r"], 2):>5} {_fmt(lay["nonzero"], 2):>5} '
                f'{lay["flops"]:>11.4g} {lay["sops"]:>11.4g} {lay["macs"]:>11.4g} '
                f'{lay["energy_mj"]:>9.3g} {100 * lay["share"]:>5.1f}%')
        return '\n'.join(rows) + '\n' + self.summary()

    def as_dict(self):
        return dict(meta=self.meta, totals=self.totals, layers=self.layers)

    def to_json(self, path):
        _write_atomic(path, lambda f: json.dump(self.as_dict(), f, indent=2))

    def to_csv(self, path):
        def write(f):
            w = csv.DictWriter(f, fieldnames=self.CSV_FIELDS, extrasaction='ignore')
            w.writeheader()
            for lay in self.layers:
                w.writerow({k: ('' if lay[k] is None else lay[k]) for k in self.CSV_FIELDS})
        _write_atomic(path, write, newline='')

    def plot_rates(self, path, title=None):
        """Bar chart of the firing rate c of every synaptic layer (colour: group; a red
        cross marks a layer whose input is not spikes)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display needed
        from matplotlib.figure import Figure
        n = len(self.layers)
        fig = Figure(figsize=(max(8.0, 0.12 * n + 2), 4.5))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        groups = list(dict.fromkeys(lay['group'] for lay in self.layers))
        colours = {g: f'C{i % 10}' for i, g in enumerate(groups)}
        for g in groups:
            idx = [i for i, lay in enumerate(self.layers) if lay['group'] == g]
            ax.bar(idx, [self.layers[i]['rate'] or 0.0 for i in idx], width=0.8,
                   color=colours[g], label=g)
        dense = [i for i, lay in enumerate(self.layers) if lay['rate'] is None]
        if dense:
            ax.plot(dense, [0] * len(dense), 'rx', label='input not spikes (MAC)')
        ax.set_xlim(-1, n)
        ax.set_xlabel('synaptic layer (forward order)')
        ax.set_ylabel('firing rate c (mean spike count per input element)')
        ax.set_title(title or f'firing rate per layer, E_SNN {self.totals["energy_mj"]:.3g} mJ '
                              f'per image, E_ANN/E_SNN {_fmt(self.totals["ann_snn_ratio"], 2)}')
        if n <= 60:
            ax.set_xticks(range(n))
            ax.set_xticklabels([lay['name'] for lay in self.layers], rotation=90, fontsize=5)
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        with atomic_open(path) as f:
            fig.savefig(f, format='png', dpi=120)
        return path

    def save(self, out_dir, prefix='energy'):
        """Write ``{prefix}.txt`` (table), ``.json``, ``.csv`` and ``{prefix}_rates.png``
        into ``out_dir``; returns their paths."""
        os.makedirs(out_dir, exist_ok=True)
        paths = dict(table=osp.join(out_dir, f'{prefix}.txt'),
                     json=osp.join(out_dir, f'{prefix}.json'),
                     csv=osp.join(out_dir, f'{prefix}.csv'),
                     figure=osp.join(out_dir, f'{prefix}_rates.png'))
        _write_atomic(paths['table'], lambda f: f.write(self.table() + '\n'))
        self.to_json(paths['json'])
        self.to_csv(paths['csv'])
        self.plot_rates(paths['figure'])
        return paths


def _fmt(value, digits):
    return '-' if value is None else f'{value:.{digits}f}'


def _write_atomic(path, write, newline=None):
    with atomic_open(path, 'w', newline=newline) as f:
        write(f)
