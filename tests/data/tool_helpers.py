"""Helpers of the tests that run the tools (tools/*.py and their code in mmsnn.cli)."""
import importlib
import os.path as osp

import pytest

TOY = osp.join(osp.dirname(osp.abspath(__file__)), 'toy_config.py')


def assert_user_error(proc, *needles):
    """Exit status 2, one ``error:`` message containing ``needles``, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.count('error: ') == 1, proc.stderr[-3000:]
    message = proc.stderr[proc.stderr.index('error: '):]
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def load_tool(name):
    """The code of ``tools/<name>.py``, which lives in ``mmsnn.cli.<name>`` (the script is a
    launcher over it)."""
    import importlib
    return importlib.import_module(f'mmsnn.cli.{name}')


def load_analysis_script(name):
    """``tools/analysis/<name>.py`` loaded as a module (a launcher whose ``main`` the tests
    call in-process)."""
    import importlib.util
    path = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
                    'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'{name}_script', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_error(tool, argv, capsys):
    """Run a tool's main() in-process, expecting a user error; return its message."""
    with pytest.raises(SystemExit) as exc:
        tool.main([str(a) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count('error: ') == 1 and 'Traceback' not in err, err
    return err


def tiny_seg_demo_options(data_root, iters=2):
    """``--cfg-options`` that shrink ``configs/seg/demo/sdt_srb_demo.py`` to 32x32 crops and
    taps 0-2 on generated data in ``data_root``: ``iters`` iterations, validation and a
    checkpoint at the end, no dataloader workers."""
    opts = [f'data_root={data_root}', 'train_dataloader.batch_size=2',
            'train_dataloader.dataset.pipeline.2.scale=(64,32)',
            'train_dataloader.dataset.pipeline.3.crop_size=(32,32)',
            'model.data_preprocessor.size=(32,32)',
            'test_dataloader.dataset.pipeline.1.scale=(64,32)',
            'val_dataloader.dataset.pipeline.1.scale=(64,32)',
            'model.backbone.out_indices=(0,1,2)', 'model.neck.in_channels=[8,16,32]',
            'model.neck.num_outs=3', 'model.decode_head.in_channels=[32,32,32]',
            'model.decode_head.in_index=[0,1,2]', 'model.decode_head.feature_strides=[2,4,8]',
            f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}']
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    return opts
