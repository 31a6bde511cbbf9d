"""The DeepLab meta-architecture: backbone → ASPP or DPC → [decoder] → logits.

Variable paths joined with '/' equal the original TF variable names, so a
model-zoo checkpoint maps one-to-one (see `checkpoint_import`).
"""

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from deeplab_jax import config_checks
from deeplab_jax.backbones import create_backbone
from deeplab_jax.heads.aspp import ASPP, image_pooling_window
from deeplab_jax.heads.auxiliary import AuxiliaryHead
from deeplab_jax.heads.decoder import Decoder
from deeplab_jax.heads.dense_prediction_cell import Branch, DensePredictionCell, load_cell_config
from deeplab_jax.layers import BatchNormSettings, Conv2DWithBias, Kernels, fastest_kernels
from deeplab_jax.resize import resize_bilinear, scale_dimension


def normalize_images(images):
  """0..255 → [−1, 1] as the original: (2/255)·x − 1 in float32 (127.5 → 0)."""
  return (2.0 / 255.0) * images.astype(jnp.float32) - 1.0


class DeepLab(nn.Module):
  """`__call__(images, train)` returns the original's `merged_logits`.

  images: float32 [N, H, W, 3], pixel values 0..255 (padding 127.5). Every
  internal size comes from (H, W) via `scale_dimension`, as the original
  derives them from the crop size. The fields are those of `config.model`
  (documented in `configs/defaults.py`); `create_model` maps a config to them.
  """
  num_classes: int
  backbone: str = 'mobilenet_v2'
  depth_multiplier: float = 1.0  # MobileNetV2 only.
  output_stride: int = 16
  multi_grid: Tuple[int, ...] = (1, 1, 1)
  atrous_rates: Tuple[int, ...] = ()
  aspp_with_separable_conv: bool = True
  add_image_level_feature: bool = True
  image_pooling_crop_size: Optional[Tuple[int, int]] = None
  image_pooling_stride: Tuple[int, int] = (1, 1)
  # The loaded cell (`load_cell_config`); None builds ASPP.
  dense_prediction_cell: Optional[Tuple[Branch, ...]] = None
  decoder_output_stride: Optional[int] = None
  decoder_use_separable_conv: bool = True
  # Deep supervision (heads/auxiliary.py): in training, logits of a second
  # classifier on the backbone's features are sown as
  # ('intermediates', 'auxiliary_logits') for their own loss term.
  auxiliary_head: bool = False
  image_pyramid: Tuple[float, ...] = (1.0,)
  merge_method: str = 'max'
  batch_norm_decay: float = 0.9997  # The head's (ASPP, DPC, decoder).
  backbone_batch_norm_decay: Optional[float] = None  # None: the backbone's own.
  zero_init_residual: bool = False  # See config_defaults.
  fine_tune_batch_norm: bool = True  # False: batch norm uses its moving statistics in training.
  bn_axis_name: Optional[str] = None  # Mesh axis of sync batch norm.
  dtype: jnp.dtype = jnp.float32  # Compute dtype; parameters stay float32.
  remat: bool = False
  kernels: Kernels = Kernels()

  def setup(self):
    self.backbone_module = create_backbone(
        self.backbone, output_stride=self.output_stride, depth_multiplier=self.depth_multiplier,
        multi_grid=self.multi_grid, bn_axis_name=self.bn_axis_name, dtype=self.dtype,
        remat=self.remat, bn_decay=self.backbone_batch_norm_decay, kernels=self.kernels,
        zero_init_residual=self.zero_init_residual)
    # ASPP, DPC and decoder share these; the backbones keep their own constants.
    head_bn = BatchNormSettings(decay=self.batch_norm_decay, epsilon=1e-5,
                                axis_name=self.bn_axis_name)
    if self.dense_prediction_cell:
      self.cell = DensePredictionCell(self.dense_prediction_cell, self.output_stride,
                                      bn=head_bn, dtype=self.dtype, kernels=self.kernels,
                                      name='meta_architecture')
    else:
      self.aspp = ASPP(self.output_stride, self.atrous_rates,
                       separable=self.aspp_with_separable_conv,
                       add_image_level_feature=self.add_image_level_feature,
                       bn=head_bn, dtype=self.dtype, kernels=self.kernels)
      nn.share_scope(self, self.aspp)
    if self.decoder_output_stride is not None:
      self.decoder = Decoder(self.decoder_use_separable_conv, bn=head_bn, dtype=self.dtype,
                             kernels=self.kernels, name='decoder')
    if self.auxiliary_head:
      self.auxiliary = AuxiliaryHead(self.num_classes, bn=head_bn, dtype=self.dtype,
                                     kernels=self.kernels, name='auxiliary')
    self.logits = Conv2DWithBias(self.num_classes, kernels=self.kernels, name='logits/semantic')

  @property
  def logits_stride(self) -> int:
    return self.decoder_output_stride or self.output_stride

  def __call__(self, images, train: bool = False,
               image_pyramid: Optional[Sequence[float]] = None):
    return self.multi_scale_logits(images, train, image_pyramid)['merged_logits']

  def multi_scale_logits(self, images, train: bool = False,
                         image_pyramid: Optional[Sequence[float]] = None):
    """{'merged_logits'} for one scale; plus 'logits_%.2f' per scale for several."""
    pyramid = tuple(image_pyramid or self.image_pyramid)
    crop = images.shape[1:3]
    logits_hw = tuple(scale_dimension(d, max(1.0, max(pyramid)) / self.logits_stride)
                      for d in crop)
    pooling_crop = self.image_pooling_crop_size
    outputs = {}
    for scale in pyramid:
      scaled, scaled_pooling_crop = images, pooling_crop
      if scale != 1.0:
        scaled = resize_bilinear(images, [scale_dimension(d, scale) for d in crop])
        if pooling_crop is not None:
          scaled_pooling_crop = [scale_dimension(d, scale) for d in pooling_crop]
      logits = self.single_scale_logits(scaled, train, scaled_pooling_crop)
      outputs[f'logits_{scale:.2f}'] = resize_bilinear(logits, logits_hw)
    if len(pyramid) == 1:
      return {'merged_logits': outputs.popitem()[1]}
    stacked = jnp.stack(list(outputs.values()))
    outputs['merged_logits'] = stacked.max(0) if self.merge_method == 'max' else stacked.mean(0)
    return outputs

  def single_scale_logits(self, images, train: bool,
                          pooling_crop: Optional[Tuple[int, int]] = None):
    """Logits at the logits stride for images of their own (crop) size."""
    train_bn = train and self.fine_tune_batch_norm
    crop = images.shape[1:3]
    features, low_level = self.backbone_module(normalize_images(images).astype(self.dtype),
                                               train_bn)
    if self.auxiliary_head and (train or self.is_initializing()):
      self.sow('intermediates', 'auxiliary_logits',
               self.auxiliary(features, train_bn=train_bn, train=train))
    if self.dense_prediction_cell:
      y = self.cell(features, train_bn=train_bn, train=train, pooling_crop_size=pooling_crop)
    else:
      y = self.aspp(features, train_bn=train_bn, train=train,
                    pooling_window=image_pooling_window(pooling_crop, self.output_stride),
                    pooling_stride=self.image_pooling_stride)
    if self.decoder_output_stride is not None:
      size = tuple(scale_dimension(d, 1.0 / self.decoder_output_stride) for d in crop)
      y = self.decoder(y, low_level, size, train_bn=train_bn)
    return self.logits(y)


def _kernel_choice(model_config, field: str, fastest: str) -> str:
  choice = model_config[field]
  return fastest if choice == 'auto' else choice


def create_model(config: ml_collections.ConfigDict, bn_axis_name: Optional[str] = None) -> DeepLab:
  """The DeepLab module of a full experiment config: the one config → module mapping.

  Raises `config_checks.ConfigError` (a ValueError naming the field) for a
  `config.model` setting that cannot work. Resolves what the module must not
  look up itself: the cell file, and 'auto' kernels for this process' backend.
  """
  config_checks.check_model(config)
  model = config.model
  fastest = fastest_kernels(jax.default_backend())
  kernels = Kernels(depthwise=_kernel_choice(model, 'depthwise_kernel', fastest.depthwise),
                    pointwise=_kernel_choice(model, 'pointwise_kernel', fastest.pointwise))
  optional_tuple = lambda value: None if value is None else tuple(value)
  return DeepLab(
      num_classes=model.num_classes,
      backbone=model.backbone,
      depth_multiplier=model.depth_multiplier,
      output_stride=model.output_stride,
      multi_grid=tuple(model.multi_grid or (1, 1, 1)),
      atrous_rates=tuple(model.atrous_rates or ()),
      aspp_with_separable_conv=model.aspp_with_separable_conv,
      add_image_level_feature=model.add_image_level_feature,
      image_pooling_crop_size=optional_tuple(model.image_pooling_crop_size),
      image_pooling_stride=tuple(model.image_pooling_stride or (1, 1)),
      dense_prediction_cell=(load_cell_config(model.dense_prediction_cell)
                             if model.dense_prediction_cell else None),
      decoder_output_stride=model.decoder_output_stride,
      decoder_use_separable_conv=model.decoder_use_separable_conv,
      auxiliary_head=config.auxiliary_loss_weight > 0,
      image_pyramid=tuple(model.image_pyramid or (1.0,)),
      merge_method=model.merge_method,
      batch_norm_decay=model.batch_norm_decay,
      backbone_batch_norm_decay=model.backbone_batch_norm_decay,
      zero_init_residual=model.zero_init_residual,
      fine_tune_batch_norm=config.fine_tune_batch_norm,
      bn_axis_name=bn_axis_name,
      dtype=jnp.dtype(model.dtype),
      remat=model.remat,
      kernels=kernels)
