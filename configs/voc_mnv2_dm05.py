"""MobileNetV2 with depth multiplier 0.5, DeepLabv3 on PASCAL VOC 2012.

Model zoo: 70.19% val mIoU at OS16 (train_aug), 0.88B multiply-adds.
"""

from configs import voc_mnv2


def get_config(arg=None):
  config = voc_mnv2.get_config(arg)
  config.model.depth_multiplier = 0.5
  return config
