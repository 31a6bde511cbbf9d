"""MobileNetV2 with depth multiplier 0.5, DeepLabv3 on PASCAL VOC 2012.

Model zoo: 70.19% val mIoU at OS16 (train_aug), 0.88B multiply-adds. The
recipe of voc_mnv2.py with half the channels.
"""

from deeplab_jax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config()
  config.model.backbone = 'mobilenet_v2'
  config.model.depth_multiplier = 0.5
  config.model.output_stride = 16
  config.model.atrous_rates = ()
  config.model.decoder_output_stride = None
  config.model.num_classes = 21
  config.dataset.name = 'pascal_voc'
  config.weight_decay = 4e-5
  return config_defaults.apply_variant(config, arg)
