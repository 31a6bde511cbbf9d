"""Class scores and labels of image batches on the canvas, traced inside jit.

Whole images at one scale, or at several scales and left-right flipped like
the original, or by sliding windows (below). Single scale without flip takes
the argmax of the logits upsampled to the input size (no softmax). Otherwise
each (scale, flip) pass is upsampled to the input size, turned into softmax
probabilities, and the probabilities are averaged. Unlike the original, a flip
at a single scale is honoured rather than silently ignored.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

from deeplab_jax.resize import resize_bilinear


def class_probabilities(model, variables, images, scales: Sequence[float] = (1.0,),
                        flip: bool = False):
  """Mean softmax probabilities [N, H, W, C] over scales (and flips)."""
  size = images.shape[1:3]
  total, count = 0.0, 0
  for scale in scales:
    for flipped in ((False, True) if flip else (False,)):
      x = images[:, :, ::-1] if flipped else images
      logits = model.apply(variables, x, train=False, image_pyramid=(scale,))
      if flipped:
        logits = logits[:, :, ::-1]
      total = total + jax.nn.softmax(resize_bilinear(logits.astype(jnp.float32), size), -1)
      count += 1
  return total / count


def predict_labels(model, variables, images, scales: Sequence[float] = (1.0,),
                   flip: bool = False):
  """int32 class ids [N, H, W] at the input size.

  images: float32 [N, H, W, 3] with pixel values 0..255, padded to the crop.
  """
  scales = tuple(scales)
  if scales == (1.0,) and not flip:
    logits = model.apply(variables, images, train=False)
    return argmax_classes(resize_bilinear(logits.astype(jnp.float32), images.shape[1:3]))
  return argmax_classes(class_probabilities(model, variables, images, scales, flip))


def argmax_classes(scores):
  """int32 index of the first maximum over the last axis, as `jnp.argmax`.

  Written as a running maximum over the classes: one elementwise loop over
  the upsampled scores. `jnp.argmax` is a variadic reduce that XLA:CPU runs
  slower (MobileNetV2 inference at 513x513: 0.060 instead of 0.054 s)."""
  best, index = scores[..., 0], jnp.zeros(scores.shape[:-1], jnp.int32)
  for c in range(1, scores.shape[-1]):
    better = scores[..., c] > best
    best = jnp.where(better, scores[..., c], best)
    index = jnp.where(better, jnp.int32(c), index)
  return index


# --- Sliding windows (mmsegmentation's `mode='slide'`) ---------------------------
#
# Overlapping windows of the crop size, `stride` apart, cover each image; each
# window is scored exactly as whole-image inference scores a crop (so one
# window equals whole-image inference), and the scores are averaged where
# windows overlap. The last window of a row or column is moved back to end at
# the image border (mmseg's rule); an image smaller than the crop is one
# window that reads the canvas' padding, as whole-image inference does.
#
# Window positions come from each image's (height, width) as traced values, so
# images of different sizes share one compiled loop on one padded canvas, and
# the canvas may have symbolic sizes (`export.py`).


def num_windows(size, crop: int, stride: int):
  """Windows along one side of `size` (int or traced): ceil((size − crop)/stride) + 1."""
  return jnp.maximum(size - crop + stride - 1, 0) // stride + 1


def window_scores(model, variables, windows, scales: Sequence[float] = (1.0,),
                  flip: bool = False):
  """float32 [N, h, w, C] scores of crops: upsampled logits for one scale
  without flip (argmax = `predict_labels`), else mean probabilities."""
  scales = tuple(scales)
  if scales == (1.0,) and not flip:
    logits = model.apply(variables, windows, train=False)
    return resize_bilinear(logits.astype(jnp.float32), windows.shape[1:3])
  return class_probabilities(model, variables, windows, scales, flip)


def slide_scores(score_fn, images, image_hw, crop_hw: Sequence[int],
                 stride_hw: Sequence[int]):
  """Window scores averaged over overlaps: float32 [N, H, W, C] on the canvas.

  Args:
    score_fn: float32 windows [N, crop_h, crop_w, 3] → scores [N, crop_h, crop_w, C].
    images: float32 [N, H, W, 3], each image at the top left of the canvas,
      padded (with the mean pixel) at least to the crop.
    image_hw: int32 [N, 2], each image's (height, width) before padding.
    crop_hw, stride_hw: static window size and step.

  Scores beyond an image's own size (or beyond the crop for a smaller image)
  are zero.
  """
  crop_h, crop_w = (int(c) for c in crop_hw)
  stride_h, stride_w = (int(s) for s in stride_hw)
  image_hw = jnp.asarray(image_hw, jnp.int32)
  rows = num_windows(image_hw[:, 0], crop_h, stride_h)
  cols = num_windows(image_hw[:, 1], crop_w, stride_w)
  count = rows * cols  # [N]; the loop runs to the batch's largest.
  last_top = jnp.maximum(image_hw[:, 0] - crop_h, 0)
  last_left = jnp.maximum(image_hw[:, 1] - crop_w, 0)

  def window_corner(index):
    index = jnp.minimum(index, count - 1)  # Images with fewer windows repeat their last...
    top = jnp.minimum(index // cols * stride_h, last_top)
    left = jnp.minimum(index % cols * stride_w, last_left)
    return top, left

  def cut(image, top, left):
    return jax.lax.dynamic_slice(image, (top, left, 0), (crop_h, crop_w, image.shape[-1]))

  def add(total, part, top, left):
    start = (top, left, 0)
    return jax.lax.dynamic_update_slice(
        total, jax.lax.dynamic_slice(total, start, part.shape) + part, start)

  def body(index, carry):
    total, weight = carry
    top, left = window_corner(index)
    scores = score_fn(jax.vmap(cut)(images, top, left))
    used = (index < count).astype(jnp.float32)  # ...which then weigh nothing.
    ones = jnp.broadcast_to(used[:, None, None, None], (*scores.shape[:3], 1))
    total = jax.vmap(add)(total, scores * used[:, None, None, None], top, left)
    weight = jax.vmap(add)(weight, ones, top, left)
    return total, weight

  num_classes = jax.eval_shape(
      score_fn, jax.ShapeDtypeStruct((images.shape[0], crop_h, crop_w, 3), jnp.float32)).shape[-1]
  # Zeros made from the images: under shard_map they vary over the batch axis
  # as the loop's results do.
  weight = images[..., :1].astype(jnp.float32) * 0.0
  total = jnp.broadcast_to(weight, (*images.shape[:3], num_classes))
  total, weight = jax.lax.fori_loop(0, jnp.max(count), body, (total, weight))
  return total / jnp.maximum(weight, 1.0)


def slide_predict(model, variables, images, image_hw, crop_hw, stride_hw,
                  scales: Sequence[float] = (1.0,), flip: bool = False,
                  with_probabilities: bool = False):
  """Labels [N, H, W] (and probabilities [N, H, W, C]) by sliding windows.

  Averages upsampled logits for one scale without flip (as mmseg), else
  probabilities; each window is scored at `scales` (and flipped) as a whole
  crop would be.
  """
  scores = slide_scores(lambda w: window_scores(model, variables, w, scales, flip),
                        images, image_hw, crop_hw, stride_hw)
  labels = argmax_classes(scores)
  if not with_probabilities:
    return labels
  single = tuple(scales) == (1.0,) and not flip
  return labels, (jax.nn.softmax(scores, -1) if single else scores)
