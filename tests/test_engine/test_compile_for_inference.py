"""``tools/test.py --compile``: the backbone and the neck compiled in place for inference
(``mmsnn.engine.compile.compile_for_inference``), the heads eager."""
import copy
import json
import os.path as osp

import pytest
import torch

import mmsnn  # noqa: F401  (registers mmsnn's modules)
from mmsnn.engine.compile import compile_for_inference
from mmsnn.models import MetaSDT
from mmsnn.models.necks.spiking_fpn import SpikingFPN

pytestmark = pytest.mark.slow  # compiles (aot_eager) or starts the tools


class _Detector(torch.nn.Module):
    """The parts ``compile_for_inference`` looks for, and a head it must leave alone."""

    def __init__(self):
        super().__init__()
        self.backbone = MetaSDT(embed_dims=(8, 16, 16, 16), out_indices=(1, 2), mixer='srb')
        self.neck = SpikingFPN(in_channels=[8, 16], out_channels=8, num_outs=2)
        self.head = torch.nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return [self.head(f) for f in self.neck(self.backbone(x))]


def test_compile_for_inference_keeps_names_and_numbers():
    torch.manual_seed(0)
    model = _Detector().double().eval()
    eager = copy.deepcopy(model)
    keys = list(model.state_dict())
    assert compile_for_inference(model, backend='aot_eager') == ['backbone', 'neck']
    # in place: a checkpoint of the eager model loads as it is
    assert list(model.state_dict()) == keys
    model.load_state_dict(eager.state_dict())
    assert model.backbone._compiled_call_impl is not None
    assert model.neck._compiled_call_impl is not None
    assert getattr(model.head, '_compiled_call_impl', None) is None
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(model(x), eager(x)):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_test_tool_compile_flag(tmp_path, run_tool, run_tool_each):
    """``tools/test.py CONFIG CKPT --compile aot_eager`` (also with ``--fuse-conv-bn``)
    evaluates the checkpoint of a tiny eager training and gets the mIoU that the training's
    own (eager) validation got."""
    from mmsnn.datasets import generate_demo_ade
    root = str(tmp_path / 'demo_ade')
    generate_demo_ade(root, num_train=2, num_val=2, image_size=(32, 32))
    from tool_helpers import tiny_seg_demo_options
    opts = tiny_seg_demo_options(root)
    config = 'configs/seg/demo/sdt_srb_demo.py'
    work = tmp_path / 'work'
    # (the training also runs with --keep-freed-memory: the CPU training's allocator flag)
    res = run_tool('tools/train.py', config, '--work-dir', work, '--keep-freed-memory',
                   '--cfg-options', *opts, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert '--keep-freed-memory: this process keeps freed memory for reuse' in res.stdout
    scalars = [json.loads(line) for line in
               open(next(work.glob('*/vis_data/scalars.json'))) if '"mIoU"' in line]
    val_miou = scalars[-1]['mIoU']

    # --compile alone, and with the fast path (rewrites on the eager head; backbone and neck
    # keep their structure for the compiler and get only the Winograd convs)
    flags = {'test': ['--compile', 'aot_eager'],
             'test_fused': ['--fuse-conv-bn', '--compile', 'aot_eager']}
    procs = run_tool_each([('tools/test.py', [config, work / 'iter_2.pth', *flag, '--work-dir',
                                              tmp_path / name, '--cfg-options', *opts])
                           for name, flag in flags.items()], timeout=600)
    for name, res in zip(flags, procs):
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-3000:]
        assert '--compile: backbone and neck compiled' in out
        with open(osp.join(tmp_path, name, 'metrics.json')) as f:
            metrics = json.load(f)
        test_miou = metrics.get('mIoU', metrics.get('metrics', {}).get('mIoU'))
        # aot_eager runs the eager kernels through the captured graph: the same spikes; the
        # fast path's float32 rounding (folded BN, Winograd) may move a spike next to a
        # quantiser level, which moves this 2-image mIoU a little at most
        assert test_miou == pytest.approx(val_miou, abs=0.01 if name == 'test' else 0.03), (
            name, test_miou, val_miou)
    assert ('--fuse-conv-bn: inference fast path on (in backbone and neck, to be compiled, '
            'only the Winograd convs)') in procs[1].stdout


def test_test_tool_refuses_compile_with_energy(tmp_path):
    from mmsnn.cli import test as test_cli
    args = test_cli.parse_args(['cfg.py', 'ckpt.pth', '--compile', '--energy'])
    assert args.compile == 'inductor'
    with pytest.raises(Exception, match='--compile and --energy together'):
        test_cli.check_compile_flags(args)


def test_keep_freed_memory_is_refused_where_the_model_runs_on_a_gpu(monkeypatch):
    from mmsnn.cli.arguments import check_keep_freed_memory
    from mmsnn.utils.errors import MMSNNUserError
    check_keep_freed_memory(True, 'training')  # no GPU here: accepted
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    check_keep_freed_memory(False, 'training')
    with pytest.raises(MMSNNUserError, match='--keep-freed-memory concerns CPU training'):
        check_keep_freed_memory(True, 'training')
