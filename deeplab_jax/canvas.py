"""The fixed canvas the model predicts on, for images of any size.

The model derives every internal size from the static shape of its input, as
the original derives them from the crop, so prediction runs on a canvas:

1. The image keeps its size if it fits the crop (`config.eval_crop_size`),
   and is otherwise shrunk (aspect ratio kept) until it fits. With
   `resize_long_side=L` its long side becomes L instead (up or down), again
   never beyond the crop. Resizing is TF1 bilinear with align_corners, like
   the original's `resize_to_range`.
2. It is padded at the bottom and right with the mean pixel 127.5 to the
   canvas: the crop itself (`pad_to_crop=True`, what the original evaluation
   and export do, so results equal the evaluation's), or the smallest
   `output_stride·k + 1` size that holds it (`pad_to_crop=False`: faster on
   small images; image pooling then averages over less padding, which moves
   predictions slightly).
3. (`scoring`) `config.eval_scales` / `config.eval_flip` prediction on the canvas.
4. The labels (and probabilities) of the image's region are mapped back to
   the input size with nearest-neighbour align-corners (an identity when the
   image was not resized).

With `config.eval_mode='slide'` no image is resized: windows of the crop size,
`config.eval_slide_stride` apart, cover it at full resolution, and the canvas
only pads it (`slide_canvas_size`).

The sizes in steps 1 and 4 are computed with jnp from the input's shape, so
they also lower with symbolic height and width (`export.py`).
"""

from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplab_jax import resize

# Maps to 0 after `model.normalize_images` ((2/255)·x − 1), which every
# backbone the model builds uses.
MEAN_PIXEL = 127.5


def valid_size(size: int, stride: int) -> int:
  """The smallest `stride·k + 1` not below `size` (every stride-2 step is exact)."""
  return -(-(int(size) - 1) // stride) * stride + 1


def fitted_size(image_hw, crop_hw: Sequence[int], resize_long_side: Optional[int] = None):
  """int32 [2]: the (height, width) the image is resized to before padding.

  `image_hw` may hold ints, traced or symbolic dimensions. Without
  `resize_long_side` the size is kept when it fits the crop; otherwise the
  scale is the largest that fits (or makes the long side `resize_long_side`),
  and the side that decides it lands exactly on its target.
  """
  h, w = (jnp.asarray(d, jnp.float32) for d in image_hw)
  crop_h, crop_w = (float(c) for c in crop_hw)
  scale = jnp.minimum(crop_h / h, crop_w / w)
  if resize_long_side is None:
    scale = jnp.minimum(scale, 1.0)
  else:
    scale = jnp.minimum(scale, float(resize_long_side) / jnp.maximum(h, w))

  def side(d, limit):
    return jnp.clip(jnp.floor(d * scale + 0.5), 1.0, limit).astype(jnp.int32)
  return jnp.stack([side(h, crop_h), side(w, crop_w)])


def place_on_canvas(images, fitted_hw, canvas_hw: Tuple[int, int]):
  """float32 [N, *canvas_hw, 3]: images resized to `fitted_hw`, padded with 127.5."""
  x = images.astype(jnp.float32)
  x = resize.resize_bilinear_into(x, 1, fitted_hw[0], canvas_hw[0])
  x = resize.resize_bilinear_into(x, 2, fitted_hw[1], canvas_hw[1])
  rows = jnp.arange(canvas_hw[0])[None, :, None, None] < fitted_hw[0]
  cols = jnp.arange(canvas_hw[1])[None, None, :, None] < fitted_hw[1]
  return jnp.where(rows & cols, x, jnp.float32(MEAN_PIXEL))


def fit_to_canvas(images, crop_hw: Sequence[int], *, resize_long_side: Optional[int] = None,
                  pad_to_crop: bool = True, stride: int = 16):
  """(float32 canvas images [N, h, w, 3], int32 fitted (height, width)) — steps 1–2."""
  fitted = fitted_size(images.shape[1:3], crop_hw, resize_long_side)
  if pad_to_crop:
    canvas = tuple(int(c) for c in crop_hw)
  else:  # Needs concrete sizes: only the exported function has symbolic ones.
    with jax.ensure_compile_time_eval():
      concrete = fitted_size(images.shape[1:3], crop_hw, resize_long_side)
    canvas = tuple(valid_size(int(f), stride) for f in np.asarray(concrete))
  return place_on_canvas(images, fitted, canvas), fitted


def back_to_image_size(maps, fitted_hw, image_hw):
  """Step 4: the fitted region of `maps` [N, h, w, ...] (labels or probabilities
  on the canvas) resized to `image_hw`, nearest align-corners."""
  return resize.resize_nearest_region(maps, fitted_hw, image_hw)


def slide_stride(config: ml_collections.ConfigDict) -> Tuple[int, int]:
  """`config.eval_slide_stride`, or two thirds of the crop (mmseg's choice) when None."""
  stride = config.get('eval_slide_stride')
  if stride is None:
    return tuple(max(1, (2 * int(c)) // 3) for c in config.eval_crop_size)
  return tuple(int(s) for s in stride)


def slide_canvas_size(image_hw, crop_hw, stride_hw):
  """(h, w): the smallest `crop + k·stride` per side that holds `image_hw`.

  Canvases of that form bound the number of compiled shapes: every image that
  needs the same number of windows shares one."""
  return tuple(c + -(-max(int(i) - c, 0) // s) * s
               for i, c, s in zip(image_hw, crop_hw, stride_hw))
