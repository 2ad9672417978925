# Template: train on your own COCO-format dataset (here 3 categories), small enough for a CPU.
#
#   data/my_coco/annotations/train.json   data/my_coco/images/train/  (the images)
#   data/my_coco/annotations/val.json     data/my_coco/images/val/
#
#   python tools/train.py configs/det/custom/sdt_srb_s_custom_coco.py
#   python tools/test.py configs/det/custom/sdt_srb_s_custom_coco.py \
#       work_dirs/sdt_srb_s_custom_coco/epoch_8.pth
#
# Copy it and change the four marked lines. Three things must agree, and tools/train.py
# checks before training that they do: the category names in the annotation files, the
# dataset's `metainfo.classes`, and the heads' `num_classes`. For full-size images and the
# full model inherit '../sdt_srb_s_coco.py' instead: the keys below are the same.
_base_ = '../demo/sdt_srb_s_demo.py'

data_root = 'data/my_coco/'                          # <- where your dataset is
classes = ('screw', 'nut', 'bolt')                   # <- the names of its "categories"
palette = [(220, 20, 60), (0, 128, 255), (0, 200, 0)]  # <- one RGB colour per class
num_classes = len(classes)
metainfo = dict(classes=classes, palette=palette)

model = dict(roi_head=dict(bbox_head=dict(num_classes=num_classes),
                           mask_head=dict(num_classes=num_classes)))
train_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=metainfo, ann_file='annotations/train.json',  # <- files
    data_prefix=dict(img='images/train/')))
val_dataloader = dict(dataset=dict(
    data_root=data_root, metainfo=metainfo, ann_file='annotations/val.json',
    data_prefix=dict(img='images/val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
