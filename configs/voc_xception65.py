"""Xception-65 DeepLabv3+ on PASCAL VOC 2012 (model zoo: 82.20% val mIoU at OS16).

ASPP with separable atrous convs at rates 6/12/18 (use 12/24/36 at OS8) and
the decoder at stride 4. Batch 16, crop 513, lr 0.007 poly, 30k steps.
"""

from deeplab_jax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config()
  config.model.backbone = 'xception_65'
  config.model.output_stride = 16
  config.model.atrous_rates = (6, 12, 18)
  config.model.decoder_output_stride = 4
  config.model.num_classes = 21
  config.dataset.name = 'pascal_voc'
  config.weight_decay = 4e-5
  return config_defaults.apply_variant(config, arg)
