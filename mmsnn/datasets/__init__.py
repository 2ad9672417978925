from .demo_coco import demo_metainfo, generate_demo_coco, set_data_root  # noqa: F401
from .demo_ade import DEMO_CLASSES, DemoADE20KDataset, generate_demo_ade  # noqa: F401
from .guarded import GuardedDataset, guard_train_dataset  # noqa: F401
