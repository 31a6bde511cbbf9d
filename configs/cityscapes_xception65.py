"""Xception-65 DeepLabv3+ on Cityscapes fine (model zoo: 78.79% val mIoU at OS16)."""

from deeplab_jax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config()
  config.model.backbone = 'xception_65'
  config.model.output_stride = 16
  config.model.atrous_rates = (6, 12, 18)
  config.model.decoder_output_stride = 4
  config_defaults.set_cityscapes(config)
  return config_defaults.apply_variant(config, arg)
