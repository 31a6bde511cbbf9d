"""MobileNetV2 as DeepLab uses it: `mobilenet_base` up to layer_18, atrous.

Scope names follow slim's `MobilenetV2/{Conv, expanded_conv, expanded_conv_1,
…}/{expand, depthwise, project}`; `Conv_1` (1×1 to 1280) is not built.
"""

import dataclasses
import functools
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.backbones import atrous
from deeplab_jax.layers import BatchNormSettings, ConvBN, Kernels, TruncatedNormal

# (expansion t, output channels c, repeats n, first stride s) of V2_DEF.
_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
_STEM_CHANNELS = 32
_LOW_LEVEL_LAYER = 4  # layer_4/depthwise_output: stride 4, post-ReLU6.


def make_divisible(value: float, divisor: int, min_value: Optional[int] = None) -> int:
  """slim's channel rounding: nearest multiple of `divisor`, never 10% below."""
  min_value = divisor if min_value is None else min_value
  rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


class ExpandedConv(nn.Module):
  """Inverted residual: 1×1 expand → 3×3 depthwise → linear 1×1 project."""
  out_channels: int
  expansion: int
  stride: int
  rate: int
  bn: BatchNormSettings
  dtype: jnp.dtype = jnp.float32
  kernels: Kernels = Kernels()
  zero_init_residual: bool = False  # Start `project`'s gamma at 0 where there is a residual.

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(ConvBN, bn=self.bn, activation=nn.relu6, dtype=self.dtype,
                             kernels=self.kernels, kernel_init=TruncatedNormal(0.09))
    in_channels = x.shape[-1]
    # The first block expands by 1 with divisor 1; every other expansion
    # width is a multiple of 8, whatever the depth multiplier.
    inner = make_divisible(in_channels * self.expansion, 1 if self.expansion == 1 else 8)
    y = x
    if inner > in_channels:
      y = conv(inner, name='expand')(y, train)
    y = conv(None, kernel_size=3, stride=self.stride, rate=self.rate, depthwise=True,
             name='depthwise')(y, train)
    depthwise_output = y
    residual = self.stride == 1 and in_channels == self.out_channels
    project_bn = (dataclasses.replace(self.bn, initial_gamma=0.0)
                  if residual and self.zero_init_residual else self.bn)
    y = conv(self.out_channels, activation=None, bn=project_bn, name='project')(y, train)
    if residual:
      y = y + x
    return y, depthwise_output


class MobileNetV2(nn.Module):
  """Returns (layer_18 features, layer_4/depthwise_output)."""
  output_stride: int = 16
  depth_multiplier: float = 1.0
  bn_axis_name: Optional[str] = None
  dtype: jnp.dtype = jnp.float32
  remat: bool = False
  bn_decay: Optional[float] = None  # None: this backbone's own constant.
  kernels: Kernels = Kernels()
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    atrous.check_output_stride(self.output_stride)
    decay = 0.997 if self.bn_decay is None else self.bn_decay
    bn = BatchNormSettings(decay=decay, epsilon=1e-3, axis_name=self.bn_axis_name)
    if self.depth_multiplier == 1.0:
      depth = lambda c: make_divisible(c, 8, 8)
    else:
      depth = lambda c: make_divisible(c * self.depth_multiplier, 1, 1)

    schedule = atrous.AtrousSchedule(self.output_stride)
    stride, rate = schedule.next(2)
    x = ConvBN(depth(_STEM_CHANNELS), bn, kernel_size=3, stride=stride, rate=rate,
               activation=nn.relu6, kernel_init=TruncatedNormal(0.09),
               dtype=self.dtype, kernels=self.kernels, name='Conv')(x, train)
    block_cls = nn.remat(ExpandedConv, static_argnums=(2,)) if self.remat else ExpandedConv
    low_level, layer = None, 1
    for expansion, channels, repeats, first_stride in _BLOCKS:
      for i in range(repeats):
        stride, rate = schedule.next(first_stride if i == 0 else 1)
        index = layer - 1
        name = 'expanded_conv' if index == 0 else f'expanded_conv_{index}'
        x, depthwise_output = block_cls(depth(channels), expansion, stride, rate, bn,
                                        self.dtype, kernels=self.kernels,
                                        zero_init_residual=self.zero_init_residual,
                                        name=name)(x, train)
        layer += 1
        if layer == _LOW_LEVEL_LAYER:
          low_level = depthwise_output
    return x, low_level
