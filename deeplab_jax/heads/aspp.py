"""Atrous Spatial Pyramid Pooling with image-level pooling (DeepLabv3)."""

import functools
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.layers import BatchNormSettings, ConvBN, Kernels, split_separable_conv
from deeplab_jax.resize import resize_bilinear, scale_dimension

DEPTH = 256
DROPOUT_RATE = 0.1  # keep_prob 0.9, after the projection.


def image_pooling_window(pooling_crop_size: Optional[Sequence[int]], output_stride: int):
  """Average-pool kernel (h, w) for a pooling crop size, None = global mean."""
  if pooling_crop_size is None:
    return None
  return tuple(scale_dimension(d, 1.0 / output_stride) for d in pooling_crop_size)


class ASPP(nn.Module):
  """Branches `image_pooling`, `aspp0`, `aspp{i}` concatenated, then projected.

  The parent shares its scope with this module, so variables sit at the top
  level (`image_pooling/…`, `aspp0/…`, `concat_projection/…`) as in the original.
  """
  output_stride: int
  atrous_rates: Sequence[int] = ()
  separable: bool = True
  add_image_level_feature: bool = True
  bn: BatchNormSettings = BatchNormSettings(decay=0.9997, epsilon=1e-5)
  dtype: jnp.dtype = jnp.float32
  kernels: Kernels = Kernels()

  @nn.compact
  def __call__(self, features, *, train_bn: bool, train: bool,
               pooling_window: Optional[Tuple[int, int]] = None,
               pooling_stride: Sequence[int] = (1, 1)):
    bn = self.bn
    conv = functools.partial(ConvBN, bn=bn, dtype=self.dtype, kernels=self.kernels)
    size = features.shape[1:3]
    branches = []
    if self.add_image_level_feature:
      # A window larger than the features (crops smaller than the pooling
      # crop, or the small sample initialisation traces) is clipped to them.
      window = tuple(size if pooling_window is None else
                     (min(w, s) for w, s in zip(pooling_window, size)))
      if window == tuple(size):
        pooled = jnp.mean(features.astype(jnp.float32), axis=(1, 2), keepdims=True)
      else:
        pooled = nn.avg_pool(features.astype(jnp.float32), window,
                             strides=tuple(pooling_stride), padding='VALID')
      pooled = conv(DEPTH, name='image_pooling')(pooled.astype(features.dtype), train_bn)
      branches.append(resize_bilinear(pooled, size).astype(self.dtype))
    branches.append(conv(DEPTH, name='aspp0')(features, train_bn))
    for i, rate in enumerate(self.atrous_rates, start=1):
      if self.separable:
        depthwise, pointwise = split_separable_conv(f'aspp{i}', DEPTH, bn, rate, self.dtype,
                                                    self.kernels)
        branches.append(pointwise(depthwise(features, train_bn), train_bn))
      else:
        branches.append(conv(DEPTH, kernel_size=3, rate=rate, name=f'aspp{i}')(features, train_bn))
    y = conv(DEPTH, name='concat_projection')(jnp.concatenate(branches, axis=-1), train_bn)
    return nn.Dropout(DROPOUT_RATE, deterministic=not train)(y)
