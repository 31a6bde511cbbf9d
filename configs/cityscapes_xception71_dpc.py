"""Xception-71 + Dense Prediction Cell + decoder on Cityscapes fine
(model zoo: 80.31% val mIoU at OS16, 502B multiply-adds).

The DPC replaces ASPP and image pooling; the cell is the one found by
architecture search on Cityscapes, shipped as 'cityscapes'.
"""

from deeplab_jax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config()
  config.model.backbone = 'xception_71'
  config.model.output_stride = 16
  config.model.atrous_rates = ()
  config.model.dense_prediction_cell = 'cityscapes'
  config.model.decoder_output_stride = 4
  config_defaults.set_cityscapes(config)
  return config_defaults.apply_variant(config, arg)
