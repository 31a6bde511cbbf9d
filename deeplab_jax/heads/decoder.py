"""The DeepLabv3+ decoder: refine the head output with stride-4 features."""

import functools
from typing import Tuple

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.layers import BatchNormSettings, ConvBN, Kernels, split_separable_conv
from deeplab_jax.resize import resize_bilinear

LOW_LEVEL_DEPTH = 48
DEPTH = 256


class Decoder(nn.Module):
  """Scope `decoder`: feature_projection0, then two 3×3 convs on the concat."""
  separable: bool = True
  bn: BatchNormSettings = BatchNormSettings(decay=0.9997, epsilon=1e-5)
  dtype: jnp.dtype = jnp.float32
  kernels: Kernels = Kernels()

  @nn.compact
  def __call__(self, features, low_level, size: Tuple[int, int], *, train_bn: bool):
    bn = self.bn
    conv = functools.partial(ConvBN, bn=bn, dtype=self.dtype, kernels=self.kernels)
    low_level = conv(LOW_LEVEL_DEPTH, name='feature_projection0')(low_level, train_bn)
    y = jnp.concatenate([resize_bilinear(features, size).astype(self.dtype),
                         resize_bilinear(low_level, size).astype(self.dtype)], axis=-1)
    if self.separable:
      for i in range(2):
        depthwise, pointwise = split_separable_conv(f'decoder_conv{i}', DEPTH, bn, 1, self.dtype,
                                                    self.kernels)
        y = pointwise(depthwise(y, train_bn), train_bn)
    else:
      for i in (1, 2):  # slim.repeat names its layers decoder_conv0_1, decoder_conv0_2.
        y = conv(DEPTH, kernel_size=3, name=f'decoder_conv0/decoder_conv0_{i}')(y, train_bn)
    return y
