"""MobileNetV2 DeepLabv3 on PASCAL VOC 2012 (model zoo: 75.32% val mIoU at OS16).

No ASPP rates and no decoder: image pooling + a 1x1 branch only. Batch 16,
crop 513, lr 0.007 poly for 30k steps on train_aug, as the DeepLabv3 paper.
`--config=configs/voc_mnv2.py:tiny` gives a small local variant for CPU.
"""

from deeplab_jax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config()
  config.model.backbone = 'mobilenet_v2'
  config.model.output_stride = 16
  config.model.atrous_rates = ()
  config.model.decoder_output_stride = None
  config.model.num_classes = 21
  config.dataset.name = 'pascal_voc'
  config.weight_decay = 4e-5
  return config_defaults.apply_variant(config, arg)
