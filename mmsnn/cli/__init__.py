"""The command-line tools' code: argument parsing and the run of each ``tools/*.py`` script.

``tools/train.py``, ``tools/test.py``, ``tools/misc/check_dataset.py``,
``tools/misc/make_demo_data.py`` and ``tools/convert_reference.py`` are thin launchers over these modules (as mmdet keeps its
``tools/`` thin over the package), so the tests and a user's own scripts import the package,
never a script by path: ``from mmsnn.cli import train; train.main(['CONFIG', ...])``.
"""
