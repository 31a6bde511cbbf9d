"""Resizing exactly as the original DeepLab does it (TF1 `align_corners=True`).

`jax.image.resize` uses half-pixel centres and antialiasing, which moves every
logit of a ported model; these gather-based versions reproduce TF1 instead.
All sizes are static Python ints, so the gather indices are constants, except
in the last section: sizes known only when traced.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


def scale_dimension(dim: int, scale: float) -> int:
  """The original's size rule `int((dim - 1) * scale + 1)` (truncating)."""
  return int((float(dim) - 1.0) * scale + 1.0)


def _source_coords(in_size: int, out_size: int) -> np.ndarray:
  # TF computes the scale and the source coordinate in float32.
  if out_size > 1:
    scale = np.float32(in_size - 1) / np.float32(out_size - 1)
  else:
    scale = np.float32(0.0)
  return np.arange(out_size, dtype=np.float32) * scale


def _interpolation(in_size: int, out_size: int):
  """Per output index: the lower and upper source index and the upper's weight."""
  src = _source_coords(in_size, out_size)
  lower = np.floor(src).astype(np.int32)
  upper = np.minimum(lower + 1, in_size - 1)
  return lower, upper, (src - lower).astype(np.float32)


def _shaped(values, axis: int, ndim: int):
  shape = [1] * ndim
  shape[axis] = -1
  return values.reshape(shape)


# A custom VJP: autodiff of the gathers is a scatter-add, which XLA:CPU runs
# one element at a time (35 ms of a MobileNetV2 train step at 320x320). The
# transpose of a fixed interpolation is itself a few weighted gathers.
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _bilinear_axis(x: jnp.ndarray, axis: int, out_size: int) -> jnp.ndarray:
  lower, upper, frac = _interpolation(x.shape[axis], out_size)
  frac = jnp.asarray(_shaped(frac, axis, x.ndim), dtype=x.dtype)
  low = jnp.take(x, lower, axis=axis)
  high = jnp.take(x, upper, axis=axis)
  return low + (high - low) * frac


def _bilinear_axis_forward(x, axis, out_size):
  return _bilinear_axis(x, axis, out_size), x.shape[axis]


def _bilinear_axis_backward(axis, out_size, in_size, grad):
  lower, upper, frac = _interpolation(in_size, out_size)
  # Per input index, the output indices that read it and with what weight.
  readers = [[] for _ in range(in_size)]
  for out_index, (low, high, weight) in enumerate(zip(lower, upper, frac)):
    readers[low].append((out_index, 1.0 - weight))
    readers[high].append((out_index, weight))
  most = max(len(r) for r in readers)
  # Missing readers point at an appended zero and weigh nothing.
  indices = np.full((in_size, most), out_size, np.int32)
  weights = np.zeros((in_size, most), np.float32)
  for i, reader in enumerate(readers):
    for k, (out_index, weight) in enumerate(reader):
      indices[i, k], weights[i, k] = out_index, weight
  padding = [(0, 0)] * grad.ndim
  padding[axis] = (0, 1)
  grad = jnp.pad(grad, padding)
  total = None
  for k in range(most):
    term = jnp.take(grad, indices[:, k], axis=axis) * jnp.asarray(
        _shaped(weights[:, k], axis, grad.ndim), grad.dtype)
    total = term if total is None else total + term
  return (total,)


_bilinear_axis.defvjp(_bilinear_axis_forward, _bilinear_axis_backward)


def resize_bilinear(x: jnp.ndarray, size) -> jnp.ndarray:
  """Bilinear align-corners resize of an NHWC tensor to `size` = (h, w)."""
  for axis, out_size in ((1, int(size[0])), (2, int(size[1]))):
    if x.shape[axis] != out_size:
      x = _bilinear_axis(x, axis, out_size)
  return x


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
  """Source index per output index: round-half-away of the align-corners grid."""
  src = np.floor(_source_coords(in_size, out_size) + np.float32(0.5))
  return np.minimum(src.astype(np.int32), in_size - 1)


def resize_nearest(x: jnp.ndarray, size) -> jnp.ndarray:
  """Nearest-neighbour align-corners resize of an NHW[C] tensor (labels)."""
  out_h, out_w = size
  x = jnp.take(x, nearest_indices(x.shape[1], int(out_h)), axis=1)
  return jnp.take(x, nearest_indices(x.shape[2], int(out_w)), axis=2)


# --- Sizes known only when traced ------------------------------------------------
# Prediction resizes images of any size, whose sizes may be traced or symbolic
# (`export.py`), so these compute the same TF1 align-corners grid with jnp.

def _traced_align_corners_scale(in_size, out_size):
  """TF1's float32 `(in − 1) / (out − 1)`, 0 for a single output."""
  in_size = jnp.asarray(in_size, jnp.float32)
  out_size = jnp.asarray(out_size, jnp.float32)
  return jnp.where(out_size > 1, (in_size - 1) / jnp.maximum(out_size - 1, 1), 0.0)


def resize_bilinear_into(x, axis: int, out_size, length: int):
  """`length` entries along `axis`; the first `out_size` are the align-corners
  bilinear resize of x to `out_size` (a traced int), the rest are filler."""
  in_size = x.shape[axis]
  src = jnp.arange(length, dtype=jnp.float32) * _traced_align_corners_scale(in_size, out_size)
  lower = jnp.minimum(jnp.floor(src).astype(jnp.int32), in_size - 1)
  upper = jnp.minimum(lower + 1, in_size - 1)
  frac = _shaped(src - lower.astype(jnp.float32), axis, x.ndim)
  low = jnp.take(x, lower, axis=axis, mode='clip')
  high = jnp.take(x, upper, axis=axis, mode='clip')
  return low + (high - low) * frac


def resize_nearest_region(x, region_hw, size):
  """Nearest align-corners resize of the top-left `region_hw` (traced ints) of
  `x` [N, h, w, ...] to the static `size` (h, w)."""
  for axis, (region, out_size) in enumerate(zip(region_hw, size), start=1):
    src = jnp.floor(jnp.arange(out_size, dtype=jnp.float32)
                    * _traced_align_corners_scale(region, out_size) + 0.5).astype(jnp.int32)
    x = jnp.take(x, jnp.minimum(src, region - 1), axis=axis, mode='clip')
  return x
