from .demo_coco import demo_metainfo, generate_demo_coco, set_data_root  # noqa: F401
