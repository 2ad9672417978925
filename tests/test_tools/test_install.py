"""mmsnn installed from a wheel, as a user gets it: the wheel carries the configs and tools
(``mmsnn/.mim/``), and a config of the user's own project, outside the checkout, inherits an
installed mmsnn config and trains with mmsnn's installed tools/train.py and with mmseg's own.

The wheel goes into a fresh virtualenv that sees the project venv's packages (torch, mmcv,
mmdet, mmseg) through a .pth line, so nothing heavy is installed again; the project venv's
own (editable) mmsnn is not visible there: that venv's .pth files are not read."""
import os
import os.path as osp
import shutil
import subprocess

import pytest
from mmengine.config import Config

import mmsnn.configs
from mmsnn.utils.checkpoint_io import load_checkpoint_file
from mmsnn.utils.config import load_config
from mmsnn.utils.errors import MMSNNUserError

BASE = 'seg/demo/sdt_srb_demo.py'
# how a user's config names an installed mmsnn config (README "Installing mmsnn")
INHERIT = f"_base_ = [__import__('mmsnn.configs').configs.path({BASE!r})]\n"


def _purelib(python):
    return subprocess.check_output(
        [python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        text=True).strip()


def _user_config(folder, data_root, base_line=INHERIT):
    """A project's own config: an installed mmsnn config with its data and a 2-iteration run."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / 'my_srb_seg.py'
    path.write_text(base_line + f'''
data_root = {str(data_root)!r}
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
''')
    return path


def test_configs_path_in_the_checkout(repo_root):
    assert mmsnn.configs.configs_dir() == osp.join(repo_root, 'configs')
    assert mmsnn.configs.tools_dir() == osp.join(repo_root, 'tools')
    assert mmsnn.configs.path(BASE) == osp.join(repo_root, 'configs', 'seg', 'demo',
                                                'sdt_srb_demo.py')
    for bad in ('seg/demo/no_such.py', '../setup.py', 'seg'):
        with pytest.raises(MMSNNUserError, match='mmsnn has no config'):
            mmsnn.configs.path(bad)


def test_configs_command_prints_paths(repo_root, capsys):
    assert mmsnn.configs.main([BASE]) == 0
    assert mmsnn.configs.main([]) == 0
    assert mmsnn.configs.main(['--tools']) == 0
    assert capsys.readouterr().out.split() == [
        osp.join(repo_root, 'configs', BASE), osp.join(repo_root, 'configs'),
        osp.join(repo_root, 'tools')]
    with pytest.raises(SystemExit) as exit_:
        mmsnn.configs.main(['seg/no_such.py'])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: mmsnn has no config 'seg/no_such.py'")


def test_a_config_naming_no_mmsnn_config_is_a_user_error(tmp_path):
    """A typo in the name: one line naming it (the tools print it as ``error: ...``)."""
    bad = _user_config(tmp_path, tmp_path / 'data', INHERIT.replace('srb_demo', 'srb_dem'))
    with pytest.raises(MMSNNUserError, match="mmsnn has no config 'seg/demo/sdt_srb_dem.py'"):
        load_config(str(bad))


def test_a_config_outside_the_checkout_inherits_through_the_path(tmp_path, repo_root):
    cfg = Config.fromfile(str(_user_config(tmp_path / 'project', tmp_path / 'data')))
    assert cfg.model.backbone.mixer == 'srb'  # from sdt_srb_demo.py
    assert cfg.model.decode_head.num_classes == 5  # from sdt_demo.py
    assert cfg.train_dataloader.dataset.data_root == str(tmp_path / 'data')  # from the user
    assert cfg.custom_imports['imports'] == ['mmsnn']


@pytest.fixture(scope='module')
def wheel_venv(tmp_path_factory, repo_root, venv_python):
    """(python of a fresh venv with mmsnn installed from a wheel of this checkout, its
    site-packages)."""
    tmp = tmp_path_factory.mktemp('wheel')
    # build from the files a release would hold (tracked, or new and not ignored), in a copy,
    # so the build leaves no build/ or egg-info in the checkout
    listed = subprocess.check_output(
        ['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
        cwd=repo_root, text=True).split('\0')
    src = tmp / 'checkout'
    for rel in filter(None, listed):
        if osp.isfile(osp.join(repo_root, rel)):
            os.makedirs(osp.dirname(src / rel), exist_ok=True)
            shutil.copy2(osp.join(repo_root, rel), src / rel)
    dist = tmp / 'dist'
    subprocess.run([venv_python, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', str(src), '-w', str(dist)], check=True, timeout=120)
    wheel, = dist.glob('mmsnn-*.whl')

    venv = tmp / 'venv'
    subprocess.run([venv_python, '-m', 'venv', '--without-pip', str(venv)], check=True,
                   timeout=60)
    python = str(venv / 'bin' / 'python')
    site = _purelib(python)
    with open(osp.join(site, 'project_venv.pth'), 'w') as f:
        f.write(_purelib(venv_python) + '\n')  # torch, mmcv, mmdet, mmseg: not installed again
    subprocess.run([venv_python, '-m', 'pip', '--python', python, 'install', '--no-deps',
                    '--no-index', '-q', str(wheel)], check=True, timeout=120)
    return python, site


def _in_venv(python, args, cwd, tool_env, timeout=300):
    env = dict(tool_env)
    env.pop('PYTHONPATH')  # the checkout's mmsnn must not be seen
    return subprocess.run([python, *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_wheel_ships_configs_and_a_user_config_trains_from_them(wheel_venv, tool_env, tmp_path):
    python, site = wheel_venv
    installed = osp.join(site, 'mmsnn', '.mim')
    project = tmp_path / 'project'
    project.mkdir()

    # the installed mmsnn answers, from its own .mim/ (one interpreter: each start imports torch)
    proc = _in_venv(python, ['-c', 'import mmsnn, mmsnn.configs as c; '
                             f'print(mmsnn.__file__, c.path({BASE!r}), c.tools_dir())'],
                    project, tool_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [osp.join(site, 'mmsnn', '__init__.py'),
                                   osp.join(installed, 'configs', BASE),
                                   osp.join(installed, 'tools')]
    assert not osp.exists(osp.join(installed, 'tools', 'setup_env.sh'))
    # every config of the checkout is in the wheel
    checkout_configs = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
    in_checkout = {osp.relpath(osp.join(d, f), checkout_configs)
               for d, _, files in os.walk(checkout_configs) for f in files
               if '__pycache__' not in d}
    assert in_checkout == {osp.relpath(osp.join(d, f), osp.join(installed, 'configs'))
                       for d, _, files in os.walk(osp.join(installed, 'configs'))
                       for f in files if '__pycache__' not in d}

    from mmsnn.datasets.demo_ade import generate_demo_ade
    data = tmp_path / 'demo_ade'
    generate_demo_ade(str(data), num_train=4, num_val=1, image_size=(64, 64))
    config = _user_config(project, data)

    # mmsnn's installed tools/train.py, and mmseg's own (it reads _base_ before custom_imports)
    import mmseg
    mmseg_train = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'train.py')
    for name, script in (('mmsnn', osp.join(installed, 'tools', 'train.py')),
                         ('mmseg', mmseg_train)):
        work = tmp_path / f'work_{name}'
        proc = _in_venv(python, [script, config, '--work-dir', work], project, tool_env)
        assert proc.returncode == 0, f'{name}: ' + proc.stderr[-4000:]
        assert load_checkpoint_file(work / 'iter_2.pth')['meta']['iter'] == 2
        dumped = Config.fromfile(str(work / 'my_srb_seg.py'))
        assert dumped.model.backbone.mixer == 'srb'
        dataset = dumped.train_dataloader.dataset
        if name == 'mmsnn':  # mmsnn's train.py wraps it: a bad sample is one clear line
            assert dataset.type == 'GuardedDataset'
            dataset = dataset.dataset
        assert dataset.data_root == str(data)
