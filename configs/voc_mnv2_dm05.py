"""MobileNetV2 with depth multiplier 0.5, DeepLabv3 on PASCAL VOC 2012.

Model zoo: 70.19% val mIoU at OS16 (train_aug), 0.88B multiply-adds. The
recipe of voc_mnv2.py with half the channels.
"""

import os

from deeplab_jax import config_defaults


def get_config(arg=None):
  full_width = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'voc_mnv2.py')
  config = config_defaults.load_config_module(full_width).get_config(arg)
  config.model.depth_multiplier = 0.5
  return config
