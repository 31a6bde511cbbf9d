"""Resizing exactly as the original DeepLab does it (TF1 `align_corners=True`).

`jax.image.resize` uses half-pixel centres and antialiasing, which moves every
logit of a ported model; these gather-based versions reproduce TF1 instead.
All sizes are static Python ints, so the gather indices are constants.
"""

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


def _bilinear_axis(x: jnp.ndarray, axis: int, out_size: int) -> jnp.ndarray:
  in_size = x.shape[axis]
  if in_size == out_size:
    return x
  src = _source_coords(in_size, out_size)
  lower = np.floor(src).astype(np.int32)
  upper = np.minimum(lower + 1, in_size - 1)
  frac = (src - lower).astype(np.float32)
  shape = [1] * x.ndim
  shape[axis] = out_size
  frac = jnp.asarray(frac.reshape(shape), dtype=x.dtype)
  low = jnp.take(x, lower, axis=axis)
  high = jnp.take(x, upper, axis=axis)
  return low + (high - low) * frac


def resize_bilinear(x: jnp.ndarray, size) -> jnp.ndarray:
  """Bilinear align-corners resize of an NHWC tensor to `size` = (h, w)."""
  out_h, out_w = size
  return _bilinear_axis(_bilinear_axis(x, 1, int(out_h)), 2, int(out_w))


def nearest_indices(in_size: int, out_size: int) -> np.ndarray:
  """Source index per output index: round-half-away of the align-corners grid."""
  src = np.floor(_source_coords(in_size, out_size) + np.float32(0.5))
  return np.minimum(src.astype(np.int32), in_size - 1)


def resize_nearest(x: jnp.ndarray, size) -> jnp.ndarray:
  """Nearest-neighbour align-corners resize of an NHW[C] tensor (labels)."""
  out_h, out_w = size
  x = jnp.take(x, nearest_indices(x.shape[1], int(out_h)), axis=1)
  return jnp.take(x, nearest_indices(x.shape[2], int(out_w)), axis=2)
