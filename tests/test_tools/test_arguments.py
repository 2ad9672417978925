"""The command-line arguments several tools share (mmsnn.cli.arguments)."""
import argparse
import os

import pytest

from mmsnn.cli import test as test_cli
from mmsnn.cli import train as train_cli
from mmsnn.cli.arguments import image_size


def test_image_size_is_height_by_width():
    assert image_size('800x1344') == (800, 1344)
    assert image_size('64X96') == (64, 96)
    for bad in ('800', '8y9', '800x', 'x1344', '0x64', '-8x64'):
        with pytest.raises(argparse.ArgumentTypeError, match='e.g. 800x1344'):
            image_size(bad)


@pytest.mark.parametrize('cli', [train_cli, test_cli], ids=['train', 'test'])
def test_local_rank_flag_becomes_local_rank_variable(cli, monkeypatch):
    # torch.distributed.launch passes --local-rank; mmengine reads LOCAL_RANK
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    extra = ['ckpt.pth'] if cli is test_cli else []
    args = cli.parse_args(['cfg.py', *extra, '--launcher', 'pytorch', '--local-rank', '3'])
    assert args.launcher == 'pytorch' and args.local_rank == 3
    assert os.environ['LOCAL_RANK'] == '3'
    # torchrun's own LOCAL_RANK wins over the flag's default
    monkeypatch.setenv('LOCAL_RANK', '1')
    cli.parse_args(['cfg.py', *extra])
    assert os.environ['LOCAL_RANK'] == '1'
    with pytest.raises(SystemExit):
        cli.parse_args(['cfg.py', *extra, '--launcher', 'lsf'])
