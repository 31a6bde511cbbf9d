"""ResNet-v1-50/101 "beta" (three-conv root), as DeepLab's `resnet_v1_beta`.

Variables are named `conv1_{1,2,3}/…` and `block<b>/unit_<u>/bottleneck_v1/
{shortcut, conv1, conv2, conv3}/…` below the scope the caller gives this module
(`resnet_v1_50` / `resnet_v1_101`, the same scopes as the non-beta nets).
"""

import dataclasses
import functools
from typing import Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.backbones import atrous
from deeplab_jax.layers import HE_NORMAL, BatchNormSettings, ConvBN, Kernels

_BN_DECAY = 0.95
_BN_EPSILON = 1e-5
# slim's variance_scaling_initializer(): He, fan-in, truncated normal.
_KERNEL_INIT = HE_NORMAL

# Units per block (block1, block2, block3); block4 has one unit per multi-grid rate.
_UNITS = {'resnet_v1_50_beta': (3, 4, 6), 'resnet_v1_101_beta': (3, 4, 23)}
VARIANTS = tuple(_UNITS)
_BASE_DEPTHS = (64, 128, 256, 512)
# block1/unit_2/bottleneck_v1/conv3 (BN output, before the residual add).
LOW_LEVEL_UNIT = ('block1', 2)


class Bottleneck(nn.Module):
  """1×1 → 3×3 (strided, dilated) → 1×1, plus shortcut, then ReLU.

  Returns (unit output, `conv3` output before the residual add).
  """
  depth: int
  stride: int
  rate: int
  bn: BatchNormSettings
  dtype: jnp.dtype = jnp.float32
  kernels: Kernels = Kernels()
  zero_init_residual: bool = False  # Start `conv3`'s gamma at 0.

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(ConvBN, bn=self.bn, kernel_init=_KERNEL_INIT, dtype=self.dtype,
                             kernels=self.kernels)
    if x.shape[-1] == self.depth:
      # slim subsamples with a 1×1 max-pool of stride s: every s-th pixel.
      shortcut = x[:, ::self.stride, ::self.stride, :] if self.stride > 1 else x
    else:
      shortcut = conv(self.depth, stride=self.stride, activation=None, name='shortcut')(x, train)
    y = conv(self.depth // 4, name='conv1')(x, train)
    y = conv(self.depth // 4, kernel_size=3, stride=self.stride, rate=self.rate,
             padding='FIXED' if self.stride > 1 else 'SAME', name='conv2')(y, train)
    conv3_bn = (dataclasses.replace(self.bn, initial_gamma=0.0) if self.zero_init_residual
                else self.bn)
    conv3 = conv(self.depth, activation=None, bn=conv3_bn, name='conv3')(y, train)
    return nn.relu(shortcut + conv3), conv3


class ResNetV1Beta(nn.Module):
  """Returns (2048-channel block4 features at `output_stride`, stride-4 low-level features).

  `x` is the image already mapped to [-1, 1]. `train` runs batch norm on batch
  statistics and updates the moving averages. The released beta checkpoints
  expect `multi_grid=(1, 2, 4)`.
  """
  variant: str
  output_stride: int = 16
  multi_grid: Sequence[int] = (1, 1, 1)
  bn_axis_name: Optional[str] = None
  dtype: jnp.dtype = jnp.float32
  remat: bool = False
  bn_decay: Optional[float] = None  # None: this backbone's own constant.
  kernels: Kernels = Kernels()
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    if self.variant not in _UNITS:
      raise ValueError(f'ResNet variant {self.variant!r} is unknown; choose one of {VARIANTS}.')
    atrous.check_output_stride(self.output_stride)
    multi_grid = tuple(int(r) for r in self.multi_grid)
    if not multi_grid or min(multi_grid) < 1:
      raise ValueError(f'multi_grid={self.multi_grid!r}: need positive unit rates for block4.')
    decay = _BN_DECAY if self.bn_decay is None else self.bn_decay
    bn = BatchNormSettings(decay, _BN_EPSILON, self.bn_axis_name)
    root = functools.partial(ConvBN, bn=bn, kernel_size=3, kernel_init=_KERNEL_INIT,
                             dtype=self.dtype, kernels=self.kernels)
    x = root(64, stride=2, padding='FIXED', name='conv1_1')(x, train)
    x = root(64, name='conv1_2')(x, train)
    x = root(128, name='conv1_3')(x, train)
    # TF 'SAME' max-pool: the padded cells never win (they count as -inf).
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')

    # (block scope, nominal stride, unit rate) of every unit; each of
    # block1..3 strides on its last unit.
    units = []
    for b, num_units in enumerate(_UNITS[self.variant]):
      units += [(b, 2 if u == num_units - 1 else 1, 1) for u in range(num_units)]
    units += [(3, 1, r) for r in multi_grid]

    unit_cls = nn.remat(Bottleneck, static_argnums=(2,)) if self.remat else Bottleneck
    # Root and pool already have stride 4.
    schedule = atrous.AtrousSchedule(self.output_stride // 4)
    low_level, index_in_block, previous_block = None, 0, None
    for block, nominal_stride, unit_rate in units:
      index_in_block = index_in_block + 1 if block == previous_block else 1
      previous_block = block
      stride, rate = schedule.next(nominal_stride)
      scope = f'block{block + 1}'
      x, conv3 = unit_cls(4 * _BASE_DEPTHS[block], stride, rate * unit_rate, bn, self.dtype,
                          self.kernels, self.zero_init_residual,
                          name=f'{scope}/unit_{index_in_block}/bottleneck_v1')(x, train)
      if (scope, index_in_block) == LOW_LEVEL_UNIT:
        low_level = conv3
    return x, low_level
