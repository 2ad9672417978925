"""mmsnn's modules are visible from the mmdet and the mmseg scope, and configs load them with
``custom_imports`` alone (as mmdet's / mmseg's own tools and ``mim train`` do)."""
import subprocess
import sys
import textwrap

import pytest
from mmengine.registry import init_default_scope

import mmsnn  # noqa: F401
from mmsnn.registry import MMSNN_MODULES, get_registry, mmsnn_names


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_backbone_and_neck_found_from_scope(scope):
    models = get_registry('model', scope)
    assert models.get('MetaSDT') is mmsnn.models.MetaSDT
    assert models.get('SpikingFPN') is not None
    assert 'MetaSDT' in mmsnn_names('model', scope)


def test_every_mmsnn_module_is_registered_where_it_says():
    assert MMSNN_MODULES['model'], 'nothing registered'
    for kind, names in MMSNN_MODULES.items():
        for name, scopes in names.items():
            for scope in scopes:
                assert get_registry(kind, scope).get(name) is not None, (kind, name, scope)


CONFIG = '''
default_scope = {scope!r}
custom_imports = dict(imports=['mmsnn'], allow_failed_imports=False)
backbone = dict(type='MetaSDT', embed_dims=(8, 16, 16, 16), mixer='srb', out_indices=(1, 4))
'''

PROBE = '''
import sys
from mmengine.config import Config
from mmengine.registry import init_default_scope
assert 'mmsnn' not in sys.modules
cfg = Config.fromfile(sys.argv[1])          # runs custom_imports
assert 'mmsnn' in sys.modules
init_default_scope(cfg.default_scope)
from {scope}.registry import MODELS
model = MODELS.build(cfg.backbone)
print(type(model).__module__, type(model).__name__)
'''


@pytest.mark.slow
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_custom_imports_config_builds_in_fresh_process(scope, tmp_path):
    cfg = tmp_path / f'{scope}_cfg.py'
    cfg.write_text(CONFIG.format(scope=scope))
    out = subprocess.run([sys.executable, '-c', textwrap.dedent(PROBE.format(scope=scope)),
                          str(cfg)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'mmsnn.models.backbones.meta_sdt MetaSDT' in out.stdout


def test_build_from_both_default_scopes():
    for scope in ('mmdet', 'mmseg'):
        init_default_scope(scope)
        model = get_registry('model', scope).build(
            dict(type='MetaSDT', embed_dims=(8, 16, 16, 16), out_indices=(4,)))
        assert model.out_channels == [16]
