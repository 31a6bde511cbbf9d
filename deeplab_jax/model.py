"""The DeepLab meta-architecture: backbone → ASPP or DPC → [decoder] → logits.

Variable paths joined with '/' equal the original TF variable names, so a
model-zoo checkpoint maps one-to-one (see `checkpoint_import`).
"""

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from deeplab_jax.backbones import create_backbone
from deeplab_jax.heads.aspp import ASPP, image_pooling_window
from deeplab_jax.heads.decoder import Decoder
from deeplab_jax.heads.dense_prediction_cell import DensePredictionCell, load_cell_config
from deeplab_jax.layers import BatchNormSettings, Conv2DWithBias
from deeplab_jax.resize import resize_bilinear, scale_dimension


def normalize_images(images):
  """0..255 → [−1, 1] as the original: (2/255)·x − 1 in float32 (127.5 → 0)."""
  return (2.0 / 255.0) * images.astype(jnp.float32) - 1.0


class DeepLab(nn.Module):
  """`__call__(images, train)` returns the original's `merged_logits`.

  images: float32 [N, H, W, 3], pixel values 0..255 (padding 127.5). Every
  internal size comes from (H, W) via `scale_dimension`, as the original
  derives them from the crop size.
  """
  config: ml_collections.FrozenConfigDict  # The `config.model` part.
  fine_tune_batch_norm: bool = True
  bn_axis_name: Optional[str] = None

  def setup(self):
    cfg = self.config
    self.dtype = jnp.dtype(cfg.get('dtype', 'float32'))
    self.backbone = create_backbone(cfg, bn_axis_name=self.bn_axis_name, dtype=self.dtype)
    # ASPP, DPC and decoder share these; the backbones keep their own constants.
    head_bn = BatchNormSettings(decay=cfg.get('batch_norm_decay', 0.9997), epsilon=1e-5,
                                axis_name=self.bn_axis_name)
    if cfg.dense_prediction_cell:
      self.dense_prediction_cell = DensePredictionCell(
          tuple(load_cell_config(cfg.dense_prediction_cell)), cfg.output_stride,
          bn=head_bn, dtype=self.dtype, name='meta_architecture')
    else:
      self.aspp = ASPP(cfg.output_stride, tuple(cfg.atrous_rates or ()),
                       separable=cfg.aspp_with_separable_conv,
                       add_image_level_feature=cfg.add_image_level_feature,
                       bn=head_bn, dtype=self.dtype)
      nn.share_scope(self, self.aspp)
    if cfg.decoder_output_stride is not None:
      if cfg.decoder_output_stride >= cfg.output_stride:
        raise ValueError(f'config.model.decoder_output_stride={cfg.decoder_output_stride} must '
                         f'be smaller than config.model.output_stride={cfg.output_stride}.')
      if cfg.decoder_output_stride != 4:
        raise ValueError('config.model.decoder_output_stride must be 4 (the stride of the '
                         'backbones\' low-level features) or None.')
      self.decoder = Decoder(cfg.decoder_use_separable_conv, bn=head_bn, dtype=self.dtype,
                             name='decoder')
    self.logits = Conv2DWithBias(cfg.num_classes, name='logits/semantic')

  @property
  def logits_stride(self) -> int:
    return self.config.decoder_output_stride or self.config.output_stride

  def __call__(self, images, train: bool = False,
               image_pyramid: Optional[Sequence[float]] = None):
    return self.multi_scale_logits(images, train, image_pyramid)['merged_logits']

  def multi_scale_logits(self, images, train: bool = False,
                         image_pyramid: Optional[Sequence[float]] = None):
    """{'merged_logits'} for one scale; plus 'logits_%.2f' per scale for several."""
    pyramid = tuple(image_pyramid or self.config.get('image_pyramid') or (1.0,))
    crop = images.shape[1:3]
    logits_hw = tuple(scale_dimension(d, max(1.0, max(pyramid)) / self.logits_stride)
                      for d in crop)
    pooling_crop = self.config.get('image_pooling_crop_size')
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
    merge = self.config.get('merge_method', 'max')
    if merge not in ('max', 'avg'):
      raise ValueError(f"config.model.merge_method={merge!r}: expected 'max' or 'avg'.")
    outputs['merged_logits'] = stacked.max(0) if merge == 'max' else stacked.mean(0)
    return outputs

  def single_scale_logits(self, images, train: bool,
                          pooling_crop: Optional[Tuple[int, int]] = None):
    """Logits at the logits stride for images of their own (crop) size."""
    cfg = self.config
    train_bn = train and self.fine_tune_batch_norm
    crop = images.shape[1:3]
    features, low_level = self.backbone(normalize_images(images).astype(self.dtype), train_bn)
    if cfg.dense_prediction_cell:
      y = self.dense_prediction_cell(features, train_bn=train_bn, train=train,
                                     pooling_crop_size=pooling_crop)
    else:
      y = self.aspp(features, train_bn=train_bn, train=train,
                    pooling_window=image_pooling_window(pooling_crop, cfg.output_stride),
                    pooling_stride=tuple(cfg.get('image_pooling_stride') or (1, 1)))
    if cfg.decoder_output_stride is not None:
      size = tuple(scale_dimension(d, 1.0 / cfg.decoder_output_stride) for d in crop)
      y = self.decoder(y, low_level, size, train_bn=train_bn)
    return self.logits(y)


def create_model(config: ml_collections.ConfigDict, bn_axis_name: Optional[str] = None) -> DeepLab:
  """The DeepLab module for a full experiment config (reads `config.model`)."""
  # Frozen: hashable, and the module cannot change its own configuration.
  return DeepLab(ml_collections.FrozenConfigDict(config.model),
                 fine_tune_batch_norm=config.get('fine_tune_batch_norm', True),
                 bn_axis_name=bn_axis_name)
