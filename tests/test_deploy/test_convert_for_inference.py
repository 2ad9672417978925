"""The inference fast path (``fuse_for_inference``, ``tools/test.py --fuse-conv-bn``): in
float64 every spike identical to the unfused model, taps within 1e-6 (1e-10 for the spiking
transformers); in float32 every Winograd conv within a stated bound of the float64 direct
convolution. Also what it must not do: train, install CPU rewrites on another device, switch
the allocator setting on by itself."""
import copy
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

import mmsnn  # noqa: F401  (registers the mmsnn modules)
from mmsnn.deploy import convert_for_inference, fold_bn_into_conv
from mmsnn.models import MetaSDT, convert_reference_checkpoint
from mmsnn.models import QKFormer, SDTv1, Spikformer
from mmsnn.models.backbones.spiking_transformer_base import MultiStepLIF
from mmsnn.models.neurons import MultiSpikeQuantizer
from golden_files import meta_sdt_parity

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TAP_KEYS = ('stage1a', 'stage1b', 'stage2', 'stage3', 'stage4')
DET_DEMO = osp.join(REPO, 'configs', 'det', 'demo', 'sdt_srb_s_demo.py')
SEG_DEMO = osp.join(REPO, 'configs', 'seg', 'demo', 'sdt_srb_demo.py')


@pytest.fixture(scope='module')
def golden():
    return {g['variant']: g for g in meta_sdt_parity()}


def record_spikes(model):
    """Forward hooks keeping a copy of every neuron output (quantiser or LIF), in call order."""
    spikes = []
    handles = [m.register_forward_hook(lambda m, i, o: spikes.append(o.detach().clone()))
               for m in model.modules() if isinstance(m, (MultiSpikeQuantizer, MultiStepLIF))]
    return spikes, handles


def run_both(model, fn, quantisers=True, leave=()):
    """``fn(model)`` on the model and on its fused copy, without gradients; returns the outputs
    and the recorded spikes of both. ``quantisers``: the model has MultiSpike quantisers (the
    fused ones must then run in place). ``leave``: converted with these parts left as built
    (they keep their BNs)."""
    fused = convert_for_inference(copy.deepcopy(model), leave=leave)
    if not leave:
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert any(getattr(m, 'inplace', False) for m in fused.modules()) == quantisers
    results = []
    for m in (model, fused):
        spikes, handles = record_spikes(m)
        with torch.no_grad():
            out = fn(m)
        for h in handles:
            h.remove()
        results.append((out, spikes))
    return results


def assert_same_spikes(ref, fused):
    assert len(ref) == len(fused) > 0
    assert sum(s.count_nonzero().item() for s in ref) > 0  # not a comparison of zeros
    for i, (a, b) in enumerate(zip(ref, fused)):
        assert torch.equal(a, b), f'spike site {i}: {(a != b).sum().item()} spikes differ'


@pytest.mark.parametrize('variant', ['conv', 'mlpixer', 'srb'])
def test_fused_backbone_golden(golden, variant):
    g = golden[variant]
    model = MetaSDT(embed_dims=g['embed_dims'], mlp_ratio=g['mlp_ratio'], mixer=variant,
                    out_indices=(0, 1, 2, 3, 4))
    model.load_state_dict(convert_reference_checkpoint(g['state_dict']), strict=True)
    model = model.double().eval()
    (ref, ref_spikes), (out, spikes) = run_both(model, lambda m: m(g['input']))
    assert_same_spikes(ref_spikes, spikes)
    for key, a, b in zip(TAP_KEYS, ref, out):
        assert (b - g['outputs'][key]).abs().max().item() < 1e-6, key
        assert (b - a).abs().max().item() < 1e-6, key


def test_fused_model_keeps_autograd_path():
    """With gradients on (an ERF probe of a fused model) nothing is done in place."""
    model = MetaSDT(embed_dims=(8, 16, 16, 16), num_heads=2, mixer='srb').eval()
    fused = convert_for_inference(copy.deepcopy(model))
    x = torch.randn(1, 3, 32, 48, requires_grad=True)
    out = fused(x)
    sum(o.sum() for o in out).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_fold_bn_into_conv1d_and_conv2d():
    g = torch.Generator().manual_seed(0)
    for conv, bn, shape in ((nn.Conv1d(4, 6, 1), nn.BatchNorm1d(6), (2, 4, 9)),
                            (nn.Conv2d(4, 6, 3, bias=False), nn.BatchNorm2d(6), (2, 4, 7, 7))):
        bn.running_mean.uniform_(-1, 1, generator=g)
        bn.running_var.uniform_(0.5, 2, generator=g)
        bn.weight.data.uniform_(0.5, 2, generator=g)
        bn.bias.data.uniform_(-1, 1, generator=g)
        conv, bn = conv.double(), bn.double().eval()
        x = torch.randn(*shape, generator=g, dtype=torch.float64)
        with torch.no_grad():
            ref = bn(conv(x))
            out = fold_bn_into_conv(copy.deepcopy(conv), bn)(x)
        assert (out - ref).abs().max() < 1e-12


def _randomise_bn(model, seed=0):
    """Random BN statistics and affine parameters, like the golden data, so that the spikes
    of a randomly initialised model are neither all zero nor all saturated."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) * 2 + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) + 0.5)
    return model


def _build(path, scope):
    cfg = Config.fromfile(path)
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model = revert_sync_batchnorm(registry.build(cfg.model))
    model.init_weights()
    return _randomise_bn(model).double().eval()


def test_fused_detector_heads_float64():
    model = _build(DET_DEMO, 'mmdet')
    x = torch.rand(2, 3, 96, 128, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rois = torch.tensor([[0, 10., 12., 60., 70.], [1, 30., 5., 120., 90.],
                         [1, 0., 0., 127., 95.]], dtype=torch.float64)

    def heads(m):
        feats = m.extract_feat(x)
        cls, reg = m.rpn_head(feats)
        bbox = m.roi_head._bbox_forward(feats, rois)
        mask = m.roi_head._mask_forward(feats, rois)
        return list(feats) + list(cls) + list(reg) + [bbox['cls_score'], bbox['bbox_pred'],
                                                        mask['mask_preds']]

    (ref, ref_spikes), (out, spikes) = run_both(model, heads)
    assert_same_spikes(ref_spikes, spikes)
    for a, b in zip(ref, out):
        assert (a - b).abs().max().item() < 1e-6


def test_leave_keeps_the_parts_to_be_compiled_as_built():
    """``leave=('backbone', 'neck')`` (``tools/test.py --fuse-conv-bn --compile``): backbone
    and neck keep their structure (their BNs, plain quantisers) and get only the Winograd
    convs, the heads fused; in float64 the same spikes and outputs as the unconverted model.
    A name that is no part: one clear error."""
    from mmsnn.utils.errors import MMSNNUserError
    model = _build(DET_DEMO, 'mmdet')
    bns = lambda m: [n for n, c in m.named_modules()  # noqa: E731
                     if isinstance(c, nn.modules.batchnorm._BatchNorm)]
    fused = convert_for_inference(copy.deepcopy(model), leave=('backbone', 'neck'))
    kept = [n for n in bns(model) if n.startswith(('backbone.', 'neck.'))]
    assert kept and bns(fused) == kept  # exactly the heads' BNs were folded
    assert fused.folded_bn and not any(n.startswith(('backbone.', 'neck.'))
                                       for n in fused.folded_bn)
    assert not any(getattr(m, 'fast', False) for m in fused.backbone.modules())
    assert any(getattr(m, 'fast', False) for m in fused.roi_head.modules())
    assert all(n.startswith('roi_head.') for n in fused.separable_roi_aligns)
    assert fused.separable_roi_aligns
    # the kernel choice is made in the left parts too: the neck's 3x3 output convs
    from mmsnn.ops.winograd import WinogradConv2d, winograd_available
    neck_3x3 = sorted(f'neck.{n}' for n, m in model.neck.named_modules()
                      if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    if winograd_available():
        assert neck_3x3 and set(neck_3x3) <= set(fused.winograd_convs)
        assert all(type(fused.get_submodule(n)) is WinogradConv2d for n in neck_3x3)
    else:
        assert not fused.winograd_convs
    x = torch.rand(1, 3, 64, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    rois = torch.tensor([[0, 4., 6., 50., 40.]], dtype=torch.float64)

    def heads(m):
        feats = m.extract_feat(x)
        mask = m.roi_head._mask_forward(feats, rois)['mask_preds']
        return list(feats) + [m.roi_head._bbox_forward(feats, rois)['cls_score'], mask]

    (ref, ref_spikes), (out, spikes) = run_both(model, heads, leave=('backbone', 'neck'))
    assert_same_spikes(ref_spikes, spikes)
    for a, b in zip(ref, out):
        assert (a - b).abs().max().item() < 1e-6
    with pytest.raises(MMSNNUserError, match='has no part named backbone2'):
        convert_for_inference(copy.deepcopy(model), leave=('backbone2',))


@pytest.mark.slow
def test_fused_segmentor_float64():
    model = _build(SEG_DEMO, 'mmseg')
    x = torch.rand(2, 3, 64, 96, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (ref, ref_spikes), (out, spikes) = run_both(
        model, lambda m: [m.decode_head(m.extract_feat(x))])
    assert_same_spikes(ref_spikes, spikes)
    assert (ref[0] - out[0]).abs().max().item() < 1e-6


@pytest.mark.slow
def test_fused_demo_detector_predictions():
    """float32, end to end through ``predict``. The folded BN and the Winograd convolutions
    round differently from the plain model, and whether that moves a spike lying next to a
    quantiser level depends on the CPU's kernels (NNPACK, oneDNN's AVX-512 / AVX2), not on the
    fast path. Up to the proposals (backbone, neck, RPN head) a moved spike can only be one that
    lay at a level: a few in a thousand at the very most, where a wrong fold moves most of them.
    The RoI heads then see the proposals ranked by float32 scores: one moved spike can swap two
    of them and change every RoI spike after it (on an AMD EPYC [avx2], 0.6-0.9 M of 28.4 M
    spike elements for two of eight random models), so they are compared exactly in float64 by
    ``test_fused_detector_heads_float64`` (mmcv's NMS has no float64) and here only where no
    spike moved: then the detections must be the same."""
    torch.manual_seed(0)  # the model's initial weights: the same whatever ran before
    model = _build(DET_DEMO, 'mmdet').float()
    model.test_cfg.rcnn.score_thr = 0.0
    from mmdet.testing import demo_mm_inputs
    data = model.data_preprocessor(demo_mm_inputs(2, [(3, 128, 128)] * 2, num_classes=3),
                                   False)
    fused = convert_for_inference(copy.deepcopy(model))
    results = []
    for m in (model, fused):
        recorded = [record_spikes(getattr(m, part)) for part in ('backbone', 'neck', 'rpn_head')]
        with torch.no_grad():
            out = m.predict(data['inputs'], data['data_samples'])
        for _, handles in recorded:
            for h in handles:
                h.remove()
        results.append((out, [s for spikes, _ in recorded for s in spikes]))
    (ref, ref_spikes), (out, spikes) = results
    assert len(ref_spikes) == len(spikes) > 0
    assert all(a.shape == b.shape for a, b in zip(ref_spikes, spikes))
    assert sum(s.count_nonzero().item() for s in ref_spikes) > 0  # not a comparison of zeros
    moved = sum((a != b).sum().item() for a, b in zip(ref_spikes, spikes))
    assert moved < 1e-3 * sum(a.numel() for a in ref_spikes), moved
    if moved:
        return
    for r, o in zip(ref, out):
        r, o = r.pred_instances, o.pred_instances
        assert len(r) == len(o) > 0
        assert torch.equal(r.labels, o.labels)
        torch.testing.assert_close(o.scores, r.scores, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(o.bboxes, r.bboxes, rtol=1e-5, atol=1e-3)
        assert torch.equal(o.masks, r.masks)


def test_tools_test_fuse_conv_bn_flag(tmp_path, run_tool_each, run_tool):
    """``tools/test.py --fuse-conv-bn`` (run as a program, on the toy config): the model it
    tests is fused, and predictions and metrics are those of the plain run. The allocator
    setting is asked for by ``--keep-freed-memory`` only, and refused before any work where a
    GPU would run the model."""
    import pickle
    import sys

    sys.path.insert(0, osp.join(REPO, 'tests', 'data'))
    import mmsnn_toy  # noqa: F401
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, 'tests', 'data', 'toy_config.py'))
    model = _randomise_bn(MODELS.build(cfg.model)).float()
    ckpt = tmp_path / 'random.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    runs = {}
    variants = (('plain', []), ('fused', ['--fuse-conv-bn']),
                ('fast', ['--fuse-conv-bn', '--keep-freed-memory']))
    # the three runs in one process, in this order: the plain run sees nothing the others
    # change, and the memory setting of the last one is asked for by its own flag only
    procs = run_tool_each([('tools/test.py', [cfg.filename, ckpt, '--work-dir', tmp_path / name,
                                              '--out', tmp_path / f'{name}.pkl', *flag])
                           for name, flag in variants])
    for (name, flag), proc in zip(variants, procs):
        out = tmp_path / f'{name}.pkl'
        assert proc.returncode == 0, proc.stderr[-3000:]
        printed = proc.stdout
        assert ('BatchNorm layers folded' in printed) == bool(flag), printed[-2000:]
        keep = '--keep-freed-memory' in flag  # never a default of --fuse-conv-bn
        assert ('--keep-freed-memory: this process keeps freed memory' in printed) == keep
        with open(out, 'rb') as f:
            runs[name] = pickle.load(f)
        with open(tmp_path / name / 'metrics.json') as f:
            runs[name + '_metrics'] = f.read().split('"metrics"')[1]
    assert runs['plain'] == runs['fused'] == runs['fast'] and len(runs['plain']) == 4
    assert runs['plain_metrics'] == runs['fused_metrics'] == runs['fast_metrics']

    # the tool as a program in a process that sees a GPU (torch.cuda.is_available patched)
    gpu = tmp_path / 'test_on_a_gpu.py'
    gpu.write_text('import runpy, sys, torch; torch.cuda.is_available = lambda: True; '
                   f'sys.argv[0] = "tools/test.py"; '
                   f'runpy.run_path({osp.join(REPO, "tools", "test.py")!r}, run_name="__main__")')
    proc = run_tool(str(gpu), cfg.filename, ckpt, '--work-dir', tmp_path / 'gpu',
                    '--keep-freed-memory')
    assert proc.returncode == 2
    assert '--keep-freed-memory concerns CPU inference' in proc.stderr
    assert 'keeps freed memory' not in proc.stdout and not (tmp_path / 'gpu').exists()


_PAGE_FAULTS = r'''
import ctypes, resource, sys, torch
# 4 KiB pages whatever the system's transparent-huge-page setting: with THP "always" a fresh
# 64 MiB block faults in as 32 huge pages, and "off" could not be told from "on"
# (PR_SET_THP_DISABLE = 41, per process, Linux >= 3.15)
if ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0) != 0:
    print('no-thp-control')
    sys.exit()


def faults_of_a_reallocation():
    # as layer after layer of forward passes: with freed memory kept, the heap grows for the
    # first few (the aligned 64 MiB request does not fit the freed block and its neighbours
    # at first; 5-7 on glibc 2.36), then serves every one from freed pages
    for _ in range(16):
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB: above glibc's largest mmap threshold (32 MiB)
        del x
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(64 * 2**20 // 4)  # the same size again: new pages, or the freed ones?
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


class InWorker(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        return faults_of_a_reallocation()


if sys.argv[1] == 'on':
    from mmsnn.utils import keep_freed_memory
    assert keep_freed_memory()
worker = next(iter(torch.utils.data.DataLoader(InWorker(), num_workers=1,
                                               multiprocessing_context='fork')))
print(faults_of_a_reallocation(), int(worker))
'''


@pytest.mark.slow
@pytest.mark.skipif(not os.uname().sysname == 'Linux', reason='glibc setting')
def test_reused_memory_is_not_faulted_in_again():
    """``keep_freed_memory`` (``tools/test.py --keep-freed-memory``): a 64 MiB tensor allocated
    again after a free reuses the freed pages instead of 16384 fresh 4 KiB pages the kernel
    must zero; a DataLoader worker forked after it has glibc's default back (fresh pages)."""
    import subprocess
    import sys
    faults = {}
    for mode in ('off', 'on'):
        out = subprocess.run([sys.executable, '-c', _PAGE_FAULTS, mode], capture_output=True,
                             text=True, cwd=REPO, check=True)
        if out.stdout.split()[-1] == 'no-thp-control':
            pytest.skip('cannot switch transparent huge pages off for one process')
        faults[mode] = [int(n) for n in out.stdout.split()[-2:]]
    # glibc's default: fresh 4 KiB pages each time, in the process and in its worker
    assert faults['off'][0] > 8000 and faults['off'][1] > 8000, faults
    assert faults['on'][0] < 200, faults  # the freed pages again
    assert faults['on'][1] > 8000, faults  # the worker does not keep freed memory


def _tiny_bn_model():
    return nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1))


def test_fuse_for_inference_leaves_the_allocator_alone(monkeypatch):
    """The process-wide allocator setting is opt-in: ``fuse_for_inference`` does not switch it
    on by default, and not for a model off the CPU even when asked."""
    from mmsnn.deploy import convert as fusion
    calls = []
    monkeypatch.setattr(fusion, 'keep_freed_memory', lambda: calls.append(1))
    convert_for_inference(_tiny_bn_model())
    assert calls == []
    convert_for_inference(_tiny_bn_model().to('meta'), reuse_memory=True)
    assert calls == []
    convert_for_inference(_tiny_bn_model(), reuse_memory=True)  # the old opt-in keeps working
    assert calls == [1]


def test_fused_model_refuses_training():
    """Its BN layers are folded: ``.train()`` on the fused model (or on a part of it that lost
    a BN) raises a user error naming the fix; ``.eval()`` still works."""
    from mmsnn.utils.errors import MMSNNUserError
    model = MetaSDT(embed_dims=(8, 16, 16, 16), num_heads=2, mixer='srb')
    fused = convert_for_inference(copy.deepcopy(model))
    assert fused.folded_bn
    owner = fused.get_submodule(fused.folded_bn[0].rsplit('.', 1)[0])
    for m in (fused, owner):
        with pytest.raises(MMSNNUserError, match='fused for inference.*train a model built'):
            m.train()
        assert not m.training and not any(x.training for x in m.modules())
    assert fused.eval() is fused and fused.train(False) is fused
    copy.deepcopy(fused).eval()
    with pytest.raises(MMSNNUserError):
        copy.deepcopy(fused).train()
    assert model.train() is model  # the unfused model trains as before


@pytest.mark.slow
def test_cpu_rewrites_are_not_installed_off_the_cpu():
    """RoIAlign as products, the seg running-max argmax and Winograd replace one fused GPU
    kernel each by many launches: on a model whose parameters are not on the CPU (meta here,
    standing for CUDA) they are not installed; BN is still folded."""
    from mmsnn.ops.roi_align import SeparableRoIAlign
    from mmsnn.deploy.seg_postprocess import _fast_route_applies
    from mmsnn.ops.winograd import WinogradConv2d, winograd_available
    det, seg = _build(DET_DEMO, 'mmdet').float(), _build(SEG_DEMO, 'mmseg').float()
    for model in (det, seg):
        on_cpu = convert_for_inference(copy.deepcopy(model))
        off_cpu = convert_for_inference(copy.deepcopy(model).to('meta'))
        assert len(off_cpu.folded_bn) == len(on_cpu.folded_bn) > 0
        for fused, cpu in ((off_cpu, False), (on_cpu, True)):
            kinds = {type(m) for m in fused.modules()}
            if model is det:
                assert (SeparableRoIAlign in kinds) == cpu
                assert bool(fused.separable_roi_aligns) == cpu
            else:
                assert ('postprocess_result' in vars(fused)) == cpu
            if winograd_available():
                assert (WinogradConv2d in kinds) == cpu
            assert bool(fused.winograd_convs) == (cpu and winograd_available())
    # a CPU-fused segmentor moved to a GPU afterwards hands the argmax back to mmseg
    from mmseg.structures import SegDataSample
    samples = [SegDataSample(metainfo=dict(img_shape=(4, 5), ori_shape=(4, 5)))]
    with torch.no_grad():
        assert _fast_route_applies(torch.zeros(1, 3, 4, 5), samples)
        assert not _fast_route_applies(torch.zeros(1, 3, 4, 5, device='meta'), samples)


def test_argmax_over_channels_is_torch_argmax():
    """Against torch's own argmax, with ties (the first class wins), NaN (the first NaN wins)
    and infinities."""
    from mmsnn.deploy.seg_postprocess import argmax_over_channels
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (7, 9, 11), generator=g).float()  # many ties
    x[2, 0, 0] = float('nan')
    x[5, 0, 0] = float('nan')
    x[4, 0, 1] = float('nan')
    x[:, 1, 1] = float('-inf')
    x[3, 2, 2] = x[6, 2, 2] = float('inf')
    x[0, 3, 3] = float('nan')
    for logits in (x, torch.randn(150, 33, 17, generator=g, dtype=torch.float64)):
        expected = logits.argmax(dim=0, keepdim=True)
        got = argmax_over_channels(logits)
        assert got.dtype == expected.dtype and torch.equal(got, expected)
        # classes innermost in memory (a channels-last seg head's logits): the same labels
        # as the running maximum over the channels-first copy
        innermost = logits.permute(1, 2, 0).contiguous().permute(2, 0, 1)
        assert innermost.stride(0) == 1
        assert torch.equal(argmax_over_channels(innermost), got)


def test_fast_seg_postprocess_matches_mmseg():
    """The fused segmentor's prediction step against mmseg's own method: identical labels and
    logits, on its fast route (no padding, no flip, same size) and on the routes it hands to
    mmseg (padding to crop, flip, resize to another original size)."""
    from mmseg.structures import SegDataSample

    from mmsnn.deploy.seg_postprocess import _fast_route_applies
    model = _build(SEG_DEMO, 'mmseg').float()
    fused = convert_for_inference(copy.deepcopy(model))
    logits = torch.randn(2, 150, 24, 32, generator=torch.Generator().manual_seed(3))
    logits[0, 7, :3] = logits[0, 9, :3] = 50.0  # ties
    cases = {'same size': dict(ori_shape=(24, 32)),
             'padding': dict(ori_shape=(20, 30), padding_size=[0, 2, 0, 4]),
             'flip': dict(ori_shape=(24, 32), flip=True, flip_direction='horizontal'),
             'resize': dict(ori_shape=(48, 64))}
    for name, meta in cases.items():
        def samples():
            return [SegDataSample(metainfo=dict(img_shape=(24, 32), **meta)) for _ in range(2)]
        with torch.no_grad():
            ref = model.postprocess_result(logits.clone(), samples())
            out = fused.postprocess_result(logits.clone(), samples())
            fast_route = _fast_route_applies(logits, samples())
        for r, o in zip(ref, out):
            assert torch.equal(o.pred_sem_seg.data, r.pred_sem_seg.data), name
            assert torch.equal(o.seg_logits.data, r.seg_logits.data), name
        assert fast_route == (name == 'same size'), name


def test_winograd_conv_is_the_same_linear_map(monkeypatch):
    """``WinogradConv2d`` (NNPACK) against the float64 direct convolution: float32 error
    within 5e-5 on unit-scale data; grad mode and float64 are the plain ``nn.Conv2d``."""
    from mmsnn.ops import winograd
    if not winograd.winograd_available():
        pytest.skip('this torch build has no NNPACK')
    calls = []
    nnpack = torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, '_nnpack_spatial_convolution',
                        lambda *a, **k: calls.append(1) or nnpack(*a, **k))
    g = torch.Generator().manual_seed(0)
    for batch, cin, cout, h, w, pad, bias in [(1, 16, 8, 40, 56, 1, True), (3, 8, 4, 9, 5, 0, False),
                                              (2, 32, 32, 14, 14, 2, True)]:
        conv = nn.Conv2d(cin, cout, 3, padding=pad, bias=bias).eval()
        plain = copy.deepcopy(conv)
        assert winograd.to_winograd(nn.Sequential(conv)) == ['0']
        assert isinstance(conv, winograd.WinogradConv2d)
        # spike-like input: counts 0..4 over 4, mostly zero
        x = torch.randint(0, 5, (batch, cin, h, w), generator=g).float() / 4
        x *= torch.rand(x.shape, generator=g) < 0.3
        exact = F.conv2d(x.double(), conv.weight.double(),
                         None if conv.bias is None else conv.bias.double(), padding=pad)
        n = len(calls)
        with torch.no_grad():
            y = conv(x)
        assert len(calls) == n + 1  # the Winograd path ran
        assert y.shape == exact.shape and (y.double() - exact).abs().max().item() < 5e-5
        with torch.no_grad():  # float64: the direct convolution, bit for bit
            assert torch.equal(conv.double()(x.double()), plain.double()(x.double()))
        assert torch.equal(conv(x.double()), plain(x.double()))  # grad mode, too
        conv.float()
        assert len(calls) == n + 1


def test_to_winograd_takes_only_the_convs_it_computes():
    from mmsnn.ops import winograd
    if not winograd.winograd_available():
        pytest.skip('this torch build has no NNPACK')
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1),
                          nn.Conv2d(4, 4, 3, stride=2), nn.Conv2d(4, 4, 3, groups=4),
                          nn.Conv2d(4, 4, 3, dilation=2), nn.Conv2d(4, 4, 5, padding=2),
                          nn.Conv2d(4, 4, 3, padding=1, padding_mode='reflect'), nn.BatchNorm2d(4))
    keys = list(model.state_dict())
    fused = convert_for_inference(copy.deepcopy(model), reuse_memory=False)
    assert fused.winograd_convs == ['0']
    assert [type(m).__name__ for m in fused][:2] == ['WinogradConv2d', 'Conv2d']
    assert not convert_for_inference(copy.deepcopy(model), reuse_memory=False,
                                  winograd=False).winograd_convs
    import torch.backends.nnpack as nnpack
    with nnpack.flags(enabled=False):  # the user switched NNPACK off: respected
        assert winograd.to_winograd(copy.deepcopy(model)) == []
    assert list(model.state_dict()) == keys


def _count_nnpack_calls(monkeypatch):
    calls = []
    nnpack = torch._nnpack_spatial_convolution
    monkeypatch.setattr(torch, '_nnpack_spatial_convolution',
                        lambda *a, **k: calls.append(1) or nnpack(*a, **k))
    return calls


def test_winograd_honours_nnpack_flags_set_after_conversion(monkeypatch):
    """``torch.backends.nnpack.flags(enabled=False)`` switched on after ``to_winograd``: the
    converted conv takes the direct path (the same numbers as a plain ``nn.Conv2d``)."""
    import torch.backends.nnpack as nnpack

    from mmsnn.ops import winograd
    if not winograd.winograd_available():
        pytest.skip('this torch build has no NNPACK')
    calls = _count_nnpack_calls(monkeypatch)
    conv = nn.Conv2d(4, 4, 3, padding=1).eval()
    plain = copy.deepcopy(conv)
    assert winograd.to_winograd(nn.Sequential(conv)) == ['0']
    x = torch.rand(1, 4, 9, 9, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        conv(x)
        assert len(calls) == 1
        with nnpack.flags(enabled=False):
            y = conv(x)
        assert len(calls) == 1
        assert torch.equal(y, plain(x))
        conv(x)  # and on again
        assert len(calls) == 2


#: float32 bound of a Winograd conv against the float64 direct convolution of the same input,
#: relative to the largest sum of ``|w| * |x|`` over a receptive field (the scale its rounding
#: errors grow with): in the demo models NNPACK loses up to 7e-7 of it (with and without
#: AVX-512); a wrong weight, bias or padding loses O(1)
WINOGRAD_F32_TOL = 1e-4


def test_fused_float32_winograd_convs_within_tolerance(monkeypatch):
    """The float64 fusion tests never run Winograd (no float64 kernel): here the fused demo
    detector and segmentor run in float32, and the input and output of every Winograd conv are
    checked against the float64 direct convolution, within ``WINOGRAD_F32_TOL``."""
    from mmsnn.ops import winograd
    if not winograd.winograd_available():
        pytest.skip('this torch build has no NNPACK')
    calls = _count_nnpack_calls(monkeypatch)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    for path, scope in ((DET_DEMO, 'mmdet'), (SEG_DEMO, 'mmseg')):
        fused = convert_for_inference(_build(path, scope).float())
        assert fused.winograd_convs
        seen = []
        # copies: an in-place quantiser overwrites the conv output it reads
        handles = [m.register_forward_hook(
            lambda m, i, o: seen.append((m, i[0].clone(), o.clone())))
            for m in fused.modules() if isinstance(m, winograd.WinogradConv2d)]
        n = len(calls)
        with torch.no_grad():
            feats = fused.extract_feat(x)
            if scope == 'mmdet':
                fused.rpn_head(feats)
            else:
                fused.decode_head(feats)
        for h in handles:
            h.remove()
        assert len(calls) - n == len(seen) > 0  # every hooked call took the Winograd path
        assert {id(m) for m, _, _ in seen} >= {id(fused.get_submodule(name))
                                              for name in fused.winograd_convs[:1]}
        for conv, inp, out in seen:
            args = dict(padding=conv.padding)
            w, b = conv.weight.double(), None if conv.bias is None else conv.bias.double()
            exact = F.conv2d(inp.double(), w, b, **args)
            scale = F.conv2d(inp.double().abs(), w.abs(), None if b is None else b.abs(),
                             **args).max().item()
            err = (out.double() - exact).abs().max().item()
            assert err <= WINOGRAD_F32_TOL * max(scale, 1e-30), (tuple(inp.shape), err, scale)


def _transformer(cls):
    """A small random ``cls`` (Spikformer, SDTv1, QKFormer), every tap out, float64, eval,
    with random BN statistics so that its LIFs fire."""
    kw = dict(embed_dims=32, depth=4 if cls is QKFormer else 1, num_heads=2, mlp_ratio=2.0,
              T=2, out_indices=(0, 1, 2, 3, 4))
    torch.manual_seed(0)
    return _randomise_bn(cls(**kw)).double().eval()


@pytest.mark.parametrize('cls', [Spikformer, SDTv1, QKFormer], ids=lambda c: c.__name__)
def test_fused_spiking_transformers_float64(cls):
    """``fuse_for_inference`` on Spikformer, SDT v1 and QKFormer: every LIF spike identical to
    the unfused model, every tap within 1e-10, in float64."""
    model = _transformer(cls)
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == (cls is not SDTv1)
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    (ref, ref_spikes), (out, spikes) = run_both(model, lambda m: m(x), quantisers=False)
    assert_same_spikes(ref_spikes, spikes)
    assert len(ref) == len(out) == 5
    for a, b in zip(ref, out):
        assert (a - b).abs().max().item() <= 1e-10


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_fast_path_on_cuda():
    """The fast path on a GPU (the code is device-agnostic; this machine has none): the fused
    demo detector and segmentor predict as the plain ones on CUDA, and the RoIAlign as
    matrix products agrees with mmcv's CUDA kernel."""
    from mmdet.testing import demo_mm_inputs

    from mmsnn.ops.roi_align import separable_roi_align
    det = _build(DET_DEMO, 'mmdet').float().cuda()
    det.test_cfg.rcnn.score_thr = 0.0
    data = det.data_preprocessor(demo_mm_inputs(2, [(3, 128, 128)] * 2, num_classes=3), False)
    (ref, _), (out, _) = run_both(det, lambda m: m.predict(data['inputs'], data['data_samples']))
    for r, o in zip(ref, out):
        r, o = r.pred_instances, o.pred_instances
        assert len(r) == len(o) > 0 and torch.equal(r.labels, o.labels)
        torch.testing.assert_close(o.scores, r.scores, rtol=1e-4, atol=1e-5)
    seg = _build(SEG_DEMO, 'mmseg').float().cuda()
    x = torch.rand(2, 3, 64, 96, device='cuda')
    (ref, _), (out, _) = run_both(seg, lambda m: [m.decode_head(m.extract_feat(x))])
    torch.testing.assert_close(out[0], ref[0], rtol=1e-4, atol=1e-4)

    from mmcv.ops import roi_align
    feat = torch.randn(2, 16, 40, 56, device='cuda')
    boxes = torch.rand(30, 4, device='cuda') * 200
    rois = torch.cat([torch.randint(0, 2, (30, 1), device='cuda').float(),
                      torch.minimum(boxes[:, :2], boxes[:, 2:]),
                      torch.maximum(boxes[:, :2], boxes[:, 2:])], 1)
    with torch.no_grad():
        expected = roi_align(feat, rois, (7, 7), 1 / 4, 0, 'avg', True)
        got = separable_roi_align(feat, rois, (7, 7), 1 / 4, 0, True)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_blocks_switch_themselves_to_deploy():
    """Each block rewrites itself (``switch_to_deploy()``, as mmpretrain's blocks): quantisers
    go to their one-buffer form, the neurons whose input only they read may overwrite it, the
    residual sums go in place and the attention's last product is transposed; a neuron reading
    a block input or a residual stream is left alone. The spikes do not change (float64)."""
    from mmsnn.deploy import switch_to_deploy
    from mmsnn.models.layers import SpikeDrivenAttention, SpikeTransformerBlock
    from mmsnn.models.neurons import MultiSpikeQuantizer
    torch.manual_seed(0)
    for mixer in ('conv', 'srb', 'mlpixer'):
        model = _randomise_bn(MetaSDT(embed_dims=(8, 16, 16, 16), num_heads=2,
                                      mixer=mixer)).double().eval()
        x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
        with torch.no_grad():
            ref = model(x)
        assert switch_to_deploy(model) is model
        quantisers = [m for m in model.modules() if isinstance(m, MultiSpikeQuantizer)]
        assert quantisers and all(q.fast for q in quantisers)
        attn = next(m for m in model.modules() if isinstance(m, SpikeDrivenAttention))
        assert attn.transposed_product and attn.q_spike.inplace and attn.talking_heads.inplace
        assert not attn.head_spike.inplace  # reads the residual stream
        block = next(m for m in model.modules() if isinstance(m, SpikeTransformerBlock))
        assert block.inplace_residual and not block.conv.spike1.inplace
        assert block.conv.spike2.inplace and block.mlp.fc2_spike.inplace
        assert not block.mlp.fc1_spike.inplace
        early = model.get_submodule('ConvBlock1_1.0')
        assert early.inplace_residual and early.spike2.inplace and not early.spike1.inplace
        with torch.no_grad():
            out = model(x)
        for a, b in zip(ref, out):  # float64: the transposed product only sums in another order
            assert (a - b).abs().max() < 1e-9


def test_deploy_names_no_model_class():
    """The inference rewrite reaches the mmsnn blocks only through their own
    ``switch_to_deploy()``: nothing in ``mmsnn/deploy`` imports ``mmsnn.models`` (no table of
    model classes whose private attributes it sets from outside)."""
    import ast
    import glob
    for path in glob.glob(osp.join(REPO, 'mmsnn', 'deploy', '*.py')):
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ''
                if node.level:  # relative: mmsnn/deploy/<x>.py -> mmsnn.deploy
                    module = '.'.join(['mmsnn', 'deploy'][:3 - node.level] + [module])
                assert not module.startswith('mmsnn.models'), (path, module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith('mmsnn.models') for a in node.names), path


def test_winograd_convs_stay_in_a_compiled_graph(monkeypatch):
    """Compiled, a ``WinogradConv2d`` is one op of the graph (``mmsnn::nnpack_conv2d``; dynamo
    cannot trace NNPACK's call itself): no graph break, NNPACK still computes it, and the
    compiled output equals the eager Winograd output."""
    from mmsnn.ops import winograd
    if not winograd.winograd_available():
        pytest.skip('this torch build has no NNPACK')
    if winograd._nnpack_conv2d is None:
        pytest.skip('torch.library.custom_op needs torch >= 2.4')
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                          nn.Conv2d(8, 4, 1)).eval()
    assert winograd.to_winograd(model) == ['0', '2']
    x = torch.rand(2, 4, 12, 20, generator=torch.Generator().manual_seed(1))
    calls = _count_nnpack_calls(monkeypatch)
    with torch.no_grad():
        eager = model(x)
        assert len(calls) == 2
        explained = torch._dynamo.explain(model)(x)
        assert explained.graph_count == 1 and explained.graph_break_count == 0
        torch._dynamo.reset()
        compiled = torch.compile(model, backend='aot_eager')(x)
    assert len(calls) > 2  # the compiled graph called NNPACK too
    assert torch.equal(compiled, eager)
