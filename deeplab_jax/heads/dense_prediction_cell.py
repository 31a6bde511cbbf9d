"""The Dense Prediction Cell (DPC), built from its architecture-search JSON.

Each branch reads the backbone features (input −1) or an earlier branch and is
a 1×1 conv, a split separable 3×3 conv with a (possibly non-square) dilation,
or a pyramid pooling. All branches are concatenated, dropped out *before* the
projection (ASPP drops out after), and projected to 256 channels.
"""

import dataclasses
import functools
import json
import os
from typing import Tuple

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.layers import BatchNormSettings, ConvBN, Kernels, split_separable_conv
from deeplab_jax.resize import resize_bilinear, scale_dimension

DEPTH = 256
DROPOUT_RATE = 0.1  # keep_prob 0.9 on the concatenated branches.
_CELLS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'cells')
# The cell found by architecture search on Cityscapes (shipped with the package).
SHIPPED_CELLS = {'cityscapes': 'dense_prediction_cell_branch5_top1_cityscapes.json'}


@dataclasses.dataclass(frozen=True)
class Branch:
  """One branch of the cell (hashable: the cell is a field of the model)."""
  op: str  # 'conv' or 'pyramid_pooling'.
  input: int  # -1: the backbone features; else the index of an earlier branch.
  kernel: int = 1  # conv: 1 (a 1x1 conv) or 3 (a split separable conv).
  rate: Tuple[int, int] = (1, 1)  # conv 3x3: the dilation at output stride 16.
  grid_size: Tuple[int, int] = (1, 1)  # pyramid_pooling: pooling windows per side.


def load_cell_config(name_or_path: str) -> Tuple[Branch, ...]:
  """Reads a DPC description: a shipped cell name, a shipped file name, or a path."""
  path = name_or_path
  if name_or_path in SHIPPED_CELLS:
    path = os.path.join(_CELLS_DIR, SHIPPED_CELLS[name_or_path])
  elif not os.path.exists(path) and os.path.exists(os.path.join(_CELLS_DIR, path)):
    path = os.path.join(_CELLS_DIR, path)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'config.model.dense_prediction_cell={name_or_path!r}: no such file; use a JSON path '
        f'or one of {sorted(SHIPPED_CELLS)}, or leave it empty for ASPP '
        '(--config.model.dense_prediction_cell=).')
  with open(path) as f:
    try:
      branches = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not valid JSON ({e}).') from e
  for i, branch in enumerate(branches):
    missing = {'op', 'input'} - set(branch)
    if missing or branch['op'] not in ('conv', 'pyramid_pooling'):
      raise ValueError(f'{path}: branch {i} is malformed ({branch}); every branch needs '
                       "'op' ('conv' or 'pyramid_pooling') and 'input'.")
    if not -1 <= branch['input'] < i:
      raise ValueError(f'{path}: branch {i} reads input {branch["input"]}, which is not '
                       'the features (-1) or an earlier branch.')
    needed = ('kernel',) if branch['op'] == 'conv' else ('grid_size',)
    if branch['op'] == 'conv' and branch.get('kernel') != 1:
      needed += ('rate',)
    if any(key not in branch for key in needed):
      raise ValueError(f'{path}: branch {i} ({branch}) needs {" and ".join(needed)}.')
  return tuple(Branch(op=b['op'], input=int(b['input']), kernel=int(b.get('kernel', 1)),
                      rate=tuple(int(r) for r in b.get('rate', (1, 1))),
                      grid_size=tuple(int(g) for g in b.get('grid_size', (1, 1))))
               for b in branches)


class DensePredictionCell(nn.Module):
  """Scope `meta_architecture`: branches `branch{i}[_depthwise|_pointwise]`."""
  branches: Tuple[Branch, ...]
  output_stride: int
  bn: BatchNormSettings = BatchNormSettings(decay=0.9997, epsilon=1e-5)
  dtype: jnp.dtype = jnp.float32
  kernels: Kernels = Kernels()

  @nn.compact
  def __call__(self, features, *, train_bn: bool, train: bool, pooling_crop_size=None):
    bn = self.bn
    conv = functools.partial(ConvBN, bn=bn, dtype=self.dtype, kernels=self.kernels)
    rate_multiplier = 16 // self.output_stride
    size = features.shape[1:3]
    outputs = []
    for i, branch in enumerate(self.branches):
      x = features if branch.input < 0 else outputs[branch.input]
      if branch.op == 'conv':
        if branch.kernel == 1:
          y = conv(DEPTH, name=f'branch{i}')(x, train_bn)
        else:
          rate = tuple(r * rate_multiplier for r in branch.rate)
          depthwise, pointwise = split_separable_conv(f'branch{i}', DEPTH, bn, rate, self.dtype,
                                                      self.kernels)
          y = pointwise(depthwise(x, train_bn), train_bn)
      else:
        # Pooling windows come from the crop the cell was trained at.
        crop = pooling_crop_size or [scale_dimension(d, self.output_stride) for d in size]
        window = tuple(scale_dimension(c, 1.0 / (self.output_stride * g))
                       for c, g in zip(crop, branch.grid_size))
        y = nn.avg_pool(x.astype(jnp.float32), window, strides=(1, 1), padding='VALID')
        y = conv(DEPTH, name=f'branch{i}')(y.astype(self.dtype), train_bn)
        y = resize_bilinear(y, size).astype(self.dtype)
      outputs.append(y)
    y = jnp.concatenate(outputs, axis=-1)
    y = nn.Dropout(DROPOUT_RATE, deterministic=not train)(y)
    return conv(DEPTH, name='concat_projection')(y, train_bn)
