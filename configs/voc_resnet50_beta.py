"""ResNet-v1-50-beta DeepLabv3+ on PASCAL VOC 2012.

The beta ResNet (3x3 stem, multi-grid 1/2/4 in block4) with ASPP 6/12/18 and
the decoder at stride 4; ResNet uses weight decay 1e-4.
"""

from deeplab_jax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config()
  config.model.backbone = 'resnet_v1_50_beta'
  config.model.output_stride = 16
  config.model.atrous_rates = (6, 12, 18)
  config.model.multi_grid = (1, 2, 4)
  config.model.decoder_output_stride = 4
  config.model.num_classes = 21
  config.dataset.name = 'pascal_voc'
  config.weight_decay = 1e-4
  return config_defaults.apply_variant(config, arg)
