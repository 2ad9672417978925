"""``EnergyHook``: the energy report of a test run (firing rates, SOPs, energy per image)."""
import os.path as osp

from mmengine.hooks import Hook

from ...analysis.energy.counter import EnergyCounter
from ...analysis.energy.measure import counted_test_step
from ...registry import register

__all__ = ['EnergyHook']


@register('hook')
class EnergyHook(Hook):
    """mmengine hook that adds the energy report to a test run (``tools/test.py --energy``).

    Counts every test step (``len(data_batch['inputs'])`` images; run the test loader
    with ``batch_size=1`` so that each image is counted at its own size, without the batch's
    padding) and, after the test, writes the table, JSON, CSV and figure into ``out_dir``
    (default ``{work_dir}/energy``) and prints the summary.

    The count wraps the model's ``test_step`` rather than opening in ``before_test_iter``
    and closing in ``after_test_iter``: when a step raises, mmengine calls no further hook,
    and the counter's torch-function mode would stay pushed. If a step raises, the model is
    left as it was (no counting hooks, no wrapper) and the error goes on.

    In a config (any mmdet / mmseg test run)::

        custom_hooks = [dict(type='EnergyHook', out_dir='work_dirs/energy', preset='int8')]
    """

    priority = 'NORMAL'

    def __init__(self, out_dir=None, preset='fp32', meta=None):
        self.out_dir = out_dir
        self.preset = preset
        self.meta = meta or {}
        self.counter = None
        self.report = None
        self.paths = None

    def before_test(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        self.counter = EnergyCounter(model)
        self._runner_model = runner.model
        test_step = runner.model.test_step

        def test_step_counted(data):
            try:
                return counted_test_step(self.counter, test_step, data)
            except BaseException:
                self._release()
                raise

        runner.model.test_step = test_step_counted

    def _release(self):
        """Remove the counting hooks and the ``test_step`` wrapper from the model."""
        self.counter.remove()
        if 'test_step' in vars(self._runner_model):
            del self._runner_model.test_step

    def after_test(self, runner):
        self._release()
        from mmengine.dist import is_main_process
        if not is_main_process() or self.counter.num_images == 0:
            return
        self.report = self.counter.report(self.preset, meta=self.meta)
        out_dir = self.out_dir or osp.join(runner.work_dir, 'energy')
        self.paths = self.report.save(out_dir)
        print(self.report.summary())
        print(f'energy report (table, JSON, CSV, figure) in {out_dir}')
