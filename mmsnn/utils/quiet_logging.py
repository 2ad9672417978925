"""mmengine's current logger held at WARNING for a while (its INFO lines are one per parameter
when a model initialises its weights)."""
import logging
from contextlib import contextmanager


@contextmanager
def mmengine_log_at_warning():
    """Inside: mmengine's current ``MMLogger`` drops INFO and DEBUG lines; its level is put
    back on exit (also after an exception)."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield logger
    finally:
        logger.setLevel(level)


def quiet_init(model):
    """``model.init_weights()`` (the configs' ``init_cfg``, as a training run does) without
    mmengine's per-parameter log. Returns ``model``."""
    with mmengine_log_at_warning():
        model.init_weights()
    return model


__all__ = ['mmengine_log_at_warning', 'quiet_init']
