"""mmsnn: spiking neural networks for dense prediction, as an OpenMMLab plugin.

Install with ``bash tools/setup_env.sh`` (builds mmcv's ops against your torch); this file
declares the package and its pins for tools that read them.

A wheel (``pip install .``, ``pip wheel .``) ships ``configs/`` and ``tools/`` inside the
package as ``mmsnn/.mim/configs`` and ``mmsnn/.mim/tools``, the layout mmdet and mmseg use,
so an installed mmsnn has its configs (``python -m mmsnn.configs``). They stay at the top of
the checkout; the copy is made in the build folder only. An editable install reads them from
the checkout.
"""
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
# what goes into mmsnn/.mim: (folder of the checkout, files not to ship)
MIM_FOLDERS = (
    ('configs', ()),
    # setup_env.sh sets up a checkout (it installs ./setup.py): no use in an installed package
    ('tools', ('setup_env.sh', )),
)


class BuildPyWithMim(build_py):
    """``build_py`` that also copies the checkout's configs/ and tools/ to mmsnn/.mim/."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return  # an editable install finds them in the checkout
        for folder, skip in MIM_FOLDERS:
            src = osp.join(ROOT, folder)
            if not osp.isdir(src):
                # e.g. an sdist made without MANIFEST.in: a wheel without configs is useless
                raise SystemExit(f'error: {src} is missing; mmsnn\'s wheel ships it as '
                                 f'mmsnn/.mim/{folder}. Build from a full checkout.')
            dst = osp.join(self.build_lib, 'mmsnn', '.mim', folder)
            shutil.rmtree(dst, ignore_errors=True)  # no stale files from an earlier build
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc', *skip))


def read_version():
    scope = {}
    with open('mmsnn/version.py') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmsnn',
    version=read_version(),
    description='Spiking neural networks (Meta-SDT, MLPixer, SRB) and ST-ERF analysis '
    'for mmdetection and mmsegmentation',
    long_description=open('README.md').read() if __import__('os').path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.8',
    install_requires=[
        'torch>=2.1',
        'mmengine==0.10.7',
        'mmcv==2.1.0',  # needs its compiled ops; see tools/setup_env.sh
        'mmdet==3.3.0',
        'mmsegmentation==1.2.2',
        'numpy<2',
        # spikingjelly 2.0.0 declares torchvision/torchaudio it does not need here;
        # tools/setup_env.sh installs it with --no-deps.
        'spikingjelly==2.0.0',
        'scipy',  # the Gaussian fit of the ERF metrics
        'matplotlib',  # ERF figures
    ],
    extras_require={
        'tests': ['pytest', 'pytest-xdist', 'tensorboard'],
        # the ST-ERF hook's heatmaps in TensorBoard (TensorboardVisBackend); no torch inside
        'tensorboard': ['tensorboard'],
    },
    include_package_data=True,
    cmdclass={'build_py': BuildPyWithMim},
    zip_safe=False,
)
