"""The compact golden format (``mmsnn.testing.goldens``) gives back exactly what was packed,
and the goldens the suite needs are in the repository."""
import math

import pytest
import torch

from golden_files import GOLDENS, golden_path
from mmsnn.testing.goldens import MAGIC, load_golden, pack_golden


def test_roundtrip_is_exact(tmp_path):
    g = torch.Generator().manual_seed(0)
    real64 = torch.randn(3, 5, generator=g, dtype=torch.float64)   # not float32-exact
    exact64 = torch.randn(4, 2, generator=g).double()               # float32-exact
    tree = {
        'variant': 'srb', 'n': 3, 'rate': 0.2753143310546875, 'flag': True, 'none': None,
        'nan': float('nan'), 7: 'int key',
        'list': [real64, exact64, (1, 2.5)],
        'state_dict': {'w': torch.randn(2, 3, generator=g), 'steps': torch.tensor(5),
                       'half': torch.randn(4, generator=g).half(),
                       'bits': torch.tensor([0, 255, 7], dtype=torch.uint8),
                       'mask': torch.tensor([True, False]), 'empty': torch.zeros(0, 3)},
    }
    path = tmp_path / 'x.golden.xz'
    pack_golden(tree, path)
    assert path.read_bytes().startswith(MAGIC)
    back = load_golden(path)
    assert list(back) == list(tree)
    assert back['list'][2] == (1, 2.5) and isinstance(back['list'][2], tuple)
    assert back[7] == 'int key' and back['flag'] is True and back['none'] is None
    assert math.isnan(back['nan']) and back['rate'] == tree['rate']
    for got, want in [(back['list'][0], real64), (back['list'][1], exact64)] + [
            (back['state_dict'][k], v) for k, v in tree['state_dict'].items()]:
        assert got.dtype == want.dtype and got.shape == want.shape and torch.equal(got, want)


def test_plain_torch_files_are_read_too(tmp_path):
    path = tmp_path / 'x.pt'
    torch.save({'a': torch.arange(3)}, path)
    assert torch.equal(load_golden(path)['a'], torch.arange(3))


def test_files_are_not_pickles(tmp_path):
    """A packed file describes its tree in JSON: an object the format does not know is
    refused when packing instead of being pickled."""
    with pytest.raises(TypeError, match='golden files hold'):
        pack_golden({'x': object()}, tmp_path / 'y.golden.xz')


@pytest.mark.parametrize('name', ['meta_sdt_parity', 'reference_heads/det_golden',
                                  'reference_heads/seg_golden', 'snn_transformers/spikformer',
                                  'snn_transformers/sdt_v1', 'snn_transformers/qkformer'])
def test_the_suite_needs_no_shared_folder(name):
    assert golden_path(name).is_file(), f'{golden_path(name)} missing'


def test_repository_test_data_stays_small():
    size = sum(p.stat().st_size for p in GOLDENS.rglob('*') if p.is_file())
    assert size < 32 * 2**20, size
