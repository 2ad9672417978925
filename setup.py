"""mmsnn: spiking neural networks for dense prediction, as an OpenMMLab plugin.

Install with ``bash tools/setup_env.sh`` (builds mmcv's ops against your torch); this file
declares the package and its pins for tools that read them.
"""
from setuptools import find_packages, setup


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
        'tests': ['pytest', 'tensorboard'],
        # the ST-ERF hook's heatmaps in TensorBoard (TensorboardVisBackend); no torch inside
        'tensorboard': ['tensorboard'],
    },
    include_package_data=True,
    zip_safe=False,
)
