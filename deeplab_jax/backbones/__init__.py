"""Backbones: each returns (features at the output stride, stride-4 low-level features).

The Flax module name is the scope the original uses, so checkpoint variable
names match one-to-one.
"""

import jax.numpy as jnp

from deeplab_jax.backbones.mobilenet_v2 import MobileNetV2
from deeplab_jax.backbones.resnet import ResNetV1Beta
from deeplab_jax.backbones.xception import Xception

BACKBONES = ('mobilenet_v2', 'xception_41', 'xception_65', 'xception_71',
             'resnet_v1_50_beta', 'resnet_v1_101_beta')


def create_backbone(model_config, bn_axis_name=None, dtype=None):
  """Builds the backbone module named by `model_config.backbone`."""
  dtype = jnp.dtype(model_config.get('dtype', 'float32')) if dtype is None else dtype
  name = model_config.backbone
  common = dict(output_stride=model_config.output_stride, bn_axis_name=bn_axis_name,
                dtype=dtype, remat=model_config.get('remat', False),
                bn_decay=model_config.get('backbone_batch_norm_decay'))
  multi_grid = tuple(model_config.multi_grid or (1, 1, 1))
  if name == 'mobilenet_v2':
    return MobileNetV2(depth_multiplier=model_config.depth_multiplier, name='MobilenetV2',
                       **common)
  if name in ('xception_41', 'xception_65', 'xception_71'):
    return Xception(variant=name, multi_grid=multi_grid, name=name, **common)
  if name in ('resnet_v1_50_beta', 'resnet_v1_101_beta'):
    # The beta variants use the plain ResNet scopes (resnet_v1_50/…).
    return ResNetV1Beta(variant=name, multi_grid=multi_grid, name=name[:-len('_beta')],
                        **common)
  raise ValueError(f'config.model.backbone={name!r} is unknown; choose one of {BACKBONES}.')
