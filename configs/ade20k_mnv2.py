"""MobileNetV2 DeepLabv3+ on ADE20K (model zoo: 32.04% val mIoU at OS16, 257x257).

As the zoo's `deeplabv3_mnv2_ade20k_train`: no ASPP rates (image pooling + a
1x1 branch), the decoder at output stride 4, 151 classes with 0 ("other")
ignored. Every image, at training and evaluation, is first resized so its
longer side is 257 with both sides 16k + 1 (`resize_to_range` with min = max =
257 and factor 16, the output stride), so 257x257 crops hold whole images.

The zoo's exact training settings were not published; this uses ade20k.md's
150k steps with the VOC recipe's poly lr 0.007 at batch 16 (the guidance for
fine-tuning batch norm on ADE20K: batch > 12). Start from the slim ImageNet
MobileNetV2 checkpoint (`config.init_checkpoint`).
`--config=configs/ade20k_mnv2.py:tiny` gives a small local variant for CPU.
"""

from deeplab_jax import config_defaults

_RESIZE = 257  # The longer side; also the crop, which whole images then fit.


def get_config(arg=None):
  config = config_defaults.get_config()
  config.model.backbone = 'mobilenet_v2'
  config.model.output_stride = 16
  config.model.atrous_rates = ()
  config.model.decoder_output_stride = 4
  config.model.num_classes = 151
  config.dataset.name = 'ade20k'
  config.dataset.ignore_label = 0
  config.dataset.train_split = 'train'
  config.dataset.eval_split = 'validation'
  config.dataset.min_resize_value = _RESIZE
  config.dataset.max_resize_value = _RESIZE
  config.dataset.resize_factor = 16  # Must equal the output stride.
  config.train_crop_size = (_RESIZE, _RESIZE)
  config.eval_crop_size = (_RESIZE, _RESIZE)
  config.num_train_steps = 150_000
  config.global_batch_size = 16
  config.weight_decay = 4e-5
  return config_defaults.apply_variant(config, arg)
