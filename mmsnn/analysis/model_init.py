"""A model's own initialisation (``init_weights``: the config's ``init_cfg``, as a training
run does) without mmengine's one INFO line per parameter."""
import logging


def quiet_init(model):
    """``model.init_weights()`` with mmengine's logger at WARNING meanwhile."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
