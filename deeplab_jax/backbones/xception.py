"""Xception-41/65/71, the "modified aligned" variants DeepLab uses.

Variables are named `<flow>/block<b>/unit_<u>/xception_module/
{separable_conv<i>_{depthwise,pointwise}, shortcut}/…` below the scope the
caller gives this module (`xception_65`, …), as in the original checkpoints.
"""

import dataclasses
import functools
from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.backbones import atrous
from deeplab_jax.layers import BatchNormSettings, ConvBN, Kernels, TruncatedNormal, scan_units

_BN_DECAY = 0.9997
_BN_EPSILON = 1e-3
_KERNEL_INIT = TruncatedNormal(0.09)


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """One block of identical Xception modules."""
  scope: str
  depths: Tuple[int, int, int]
  skip: str  # 'conv', 'sum' or 'none'.
  num_units: int
  stride: int
  # exit_flow/block2 puts BN+ReLU inside each separable conv (and takes the
  # multi-grid unit rates); every other block has a ReLU before each one.
  activation_inside: bool = False


def _entry_flow(variant: str) -> Tuple[BlockSpec, ...]:
  if variant == 'xception_71':
    return (BlockSpec('entry_flow/block1', (128, 128, 128), 'conv', 1, 2),
            BlockSpec('entry_flow/block2', (256, 256, 256), 'conv', 1, 1),
            BlockSpec('entry_flow/block3', (256, 256, 256), 'conv', 1, 2),
            BlockSpec('entry_flow/block4', (728, 728, 728), 'conv', 1, 1),
            BlockSpec('entry_flow/block5', (728, 728, 728), 'conv', 1, 2))
  return (BlockSpec('entry_flow/block1', (128, 128, 128), 'conv', 1, 2),
          BlockSpec('entry_flow/block2', (256, 256, 256), 'conv', 1, 2),
          BlockSpec('entry_flow/block3', (728, 728, 728), 'conv', 1, 2))


_MIDDLE_UNITS = {'xception_41': 8, 'xception_65': 16, 'xception_71': 16}
# The stride-4 separable_conv2_pointwise (BN output, pre-ReLU) the decoder reads.
LOW_LEVEL_BLOCK = {'xception_41': 'entry_flow/block2', 'xception_65': 'entry_flow/block2',
                   'xception_71': 'entry_flow/block3'}
VARIANTS = tuple(_MIDDLE_UNITS)


def block_specs(variant: str) -> Tuple[BlockSpec, ...]:
  """The block list of an Xception variant, in execution order."""
  if variant not in _MIDDLE_UNITS:
    raise ValueError(f'Xception variant {variant!r} is unknown; choose one of {VARIANTS}.')
  return (*_entry_flow(variant),
          BlockSpec('middle_flow/block1', (728, 728, 728), 'sum', _MIDDLE_UNITS[variant], 1),
          BlockSpec('exit_flow/block1', (728, 1024, 1024), 'conv', 1, 2),
          BlockSpec('exit_flow/block2', (1536, 1536, 2048), 'none', 1, 1,
                    activation_inside=True))


class XceptionModule(nn.Module):
  """Three split separable convs (only the third strided) plus a skip.

  Returns (module output, `separable_conv2_pointwise` output); the second is
  the decoder's low-level feature when this is the designated block.
  """
  depths: Tuple[int, int, int]
  skip: str
  stride: int
  rate: int
  unit_rates: Tuple[int, int, int]
  activation_inside: bool
  bn: BatchNormSettings
  dtype: jnp.dtype = jnp.float32
  kernels: Kernels = Kernels()
  # Start the last pointwise conv's gamma at 0 where there is a skip.
  zero_init_residual: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(ConvBN, bn=self.bn, kernel_init=_KERNEL_INIT, dtype=self.dtype,
                             kernels=self.kernels,
                             activation=nn.relu if self.activation_inside else None)
    last_bn = (dataclasses.replace(self.bn, initial_gamma=0.0)
               if self.zero_init_residual and self.skip != 'none' else self.bn)
    y = x
    conv2_output = None
    for i, depth in enumerate(self.depths):
      stride = self.stride if i == 2 else 1
      if not self.activation_inside:
        y = nn.relu(y)
      # Strided depthwise convs pad explicitly and symmetrically (conv2d_same).
      y = conv(None, kernel_size=3, stride=stride, rate=self.rate * self.unit_rates[i],
               padding='FIXED' if stride > 1 else 'SAME', depthwise=True,
               name=f'separable_conv{i + 1}_depthwise')(y, train)
      y = conv(depth, bn=last_bn if i == 2 else self.bn,
               name=f'separable_conv{i + 1}_pointwise')(y, train)
      if i == 1:
        conv2_output = y
    if self.skip == 'conv':
      shortcut = conv(self.depths[-1], stride=self.stride, activation=None,
                      name='shortcut')(x, train)
      y = y + shortcut
    elif self.skip == 'sum':
      y = y + x
    return y, conv2_output


class Xception(nn.Module):
  """Returns (2048-channel features at `output_stride`, stride-4 low-level features).

  `x` is the image already mapped to [-1, 1]. `train` runs batch norm on batch
  statistics and updates the moving averages.
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
    specs = block_specs(self.variant)
    atrous.check_output_stride(self.output_stride)
    multi_grid = tuple(int(r) for r in self.multi_grid)
    if len(multi_grid) != 3:
      raise ValueError(f'multi_grid={self.multi_grid!r}: Xception needs exactly 3 unit rates '
                       '(one per separable conv of exit_flow/block2).')
    decay = _BN_DECAY if self.bn_decay is None else self.bn_decay
    bn = BatchNormSettings(decay, _BN_EPSILON, self.bn_axis_name)
    root = functools.partial(ConvBN, bn=bn, kernel_size=3, kernel_init=_KERNEL_INIT,
                             dtype=self.dtype, kernels=self.kernels)
    x = root(32, stride=2, padding='FIXED', name='entry_flow/conv1_1')(x, train)
    x = root(64, name='entry_flow/conv1_2')(x, train)

    module_cls = nn.remat(XceptionModule, static_argnums=(2,)) if self.remat else XceptionModule
    # The root already has stride 2, so the blocks count up to half the target.
    schedule = atrous.AtrousSchedule(self.output_stride // 2)
    low_level = None
    for spec in specs:
      unit_rates = multi_grid if spec.activation_inside else (1, 1, 1)
      placements = [schedule.next(spec.stride) for _ in range(spec.num_units)]
      names = [f'{spec.scope}/unit_{u}/xception_module' for u in range(1, spec.num_units + 1)]
      # Training runs identical units as one scan (its step compiles one unit,
      # not 16); inference stays unrolled: XLA:CPU ran the scanned Xception-65
      # 1.14-1.36x slower at 513x513.
      if (train and spec.num_units > 1 and len(set(placements)) == 1
          and not self.is_initializing() and spec.scope != LOW_LEVEL_BLOCK[self.variant]):
        unit = XceptionModule(spec.depths, spec.skip, *placements[0], unit_rates,
                              spec.activation_inside, bn, self.dtype, self.kernels,
                              self.zero_init_residual, parent=None)
        x = scan_units(self, unit, names, x, train, self.remat)
        continue
      for (stride, rate), name in zip(placements, names):
        x, conv2_output = module_cls(
            spec.depths, spec.skip, stride, rate, unit_rates, spec.activation_inside, bn,
            self.dtype, self.kernels, self.zero_init_residual, name=name)(x, train)
        if spec.scope == LOW_LEVEL_BLOCK[self.variant]:
          low_level = conv2_output
    return x, low_level
