"""MobileNetV2 DeepLabv3 on Cityscapes fine (model zoo: 70.71% val mIoU at OS16)."""

from deeplab_jax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config()
  config.model.backbone = 'mobilenet_v2'
  config.model.output_stride = 16
  config.model.atrous_rates = ()
  config.model.decoder_output_stride = None
  config_defaults.set_cityscapes(config)
  return config_defaults.apply_variant(config, arg)
