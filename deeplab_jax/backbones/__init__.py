"""Backbones: each returns (features at the output stride, stride-4 low-level features).

The Flax module name is the scope the original uses, so checkpoint variable
names match one-to-one.
"""

from typing import Optional, Sequence

import jax.numpy as jnp

from deeplab_jax.backbones.mobilenet_v2 import MobileNetV2
from deeplab_jax.backbones.resnet import ResNetV1Beta
from deeplab_jax.backbones.xception import Xception
from deeplab_jax.layers import Kernels

BACKBONES = ('mobilenet_v2', 'xception_41', 'xception_65', 'xception_71',
             'resnet_v1_50_beta', 'resnet_v1_101_beta')


def scope_name(name: str) -> str:
  """The original's scope of backbone `name`: the first part of its variables' names."""
  if name == 'mobilenet_v2':
    return 'MobilenetV2'
  if name.startswith('resnet_v1_'):
    return name[:-len('_beta')]  # The beta variants use the plain ResNet scopes.
  return name


def create_backbone(name: str, *, output_stride: int = 16, depth_multiplier: float = 1.0,
                    multi_grid: Sequence[int] = (1, 1, 1), bn_axis_name: Optional[str] = None,
                    dtype=jnp.float32, remat: bool = False, bn_decay: Optional[float] = None,
                    kernels: Kernels = Kernels(), zero_init_residual: bool = False):
  """The backbone module `name` (one of BACKBONES) under its original scope name.

  `depth_multiplier` is MobileNetV2's, `multi_grid` the others' (the unit
  rates of the last block); `bn_decay=None` keeps the backbone's own.
  `zero_init_residual` starts the last batch norm of every residual branch
  with gamma 0 (each unit begins as the identity).
  """
  common = dict(output_stride=output_stride, bn_axis_name=bn_axis_name, dtype=dtype,
                remat=remat, bn_decay=bn_decay, kernels=kernels,
                zero_init_residual=zero_init_residual)
  if name == 'mobilenet_v2':
    return MobileNetV2(depth_multiplier=depth_multiplier, name=scope_name(name), **common)
  if name in ('xception_41', 'xception_65', 'xception_71'):
    return Xception(variant=name, multi_grid=tuple(multi_grid), name=scope_name(name), **common)
  if name in ('resnet_v1_50_beta', 'resnet_v1_101_beta'):
    return ResNetV1Beta(variant=name, multi_grid=tuple(multi_grid), name=scope_name(name),
                        **common)
  raise ValueError(f'config.model.backbone={name!r} is unknown; choose one of {BACKBONES}.')
