"""The original DeepLab's `preprocess_image_and_label`, as TensorFlow ops for tf.data.

Order of operations (reference §4.3): cast (image float32 0..255, label int32);
optional resize to a size range; train: random scale; pad bottom/right to the
crop with the mean pixel (image) and the ignore label (label); train: random
crop and left-right flip. Evaluation feeds the whole, padded image.

Randomness is stateless: every random choice is drawn from a per-example seed
(a [2] int tensor), so the same seed always gives the same augmentation. This
is what makes a resumed training run reproduce an uninterrupted one.
"""

from typing import Optional, Sequence, Tuple

import tensorflow as tf

# Left-right flip when u <= 0.5, u ~ U[0, 1) (the original's `_PROB_OF_FLIP`).
_FLIP_PROBABILITY = 0.5
# The non-beta ResNets subtract this ImageNet mean; every other backbone maps
# 127.5 to 0. Padding with it makes padded pixels exactly 0 after normalisation.
_IMAGENET_MEAN_RGB = (123.15, 115.90, 103.06)
_MEAN_SUBTRACTING_BACKBONES = ('resnet_v1_50', 'resnet_v1_101')


def mean_pixel(backbone: str) -> Tuple[float, float, float]:
  """The image padding value of a backbone (the original's `mean_pixel`)."""
  if backbone in _MEAN_SUBTRACTING_BACKBONES:
    return _IMAGENET_MEAN_RGB
  return (127.5, 127.5, 127.5)


def resize_bilinear(image: tf.Tensor, size) -> tf.Tensor:
  """Bilinear align-corners resize of one float32 image [H, W, C]."""
  resized = tf.raw_ops.ResizeBilinear(
      images=image[tf.newaxis], size=size, align_corners=True,
      half_pixel_centers=False)
  return resized[0]


def resize_nearest(label: tf.Tensor, size) -> tf.Tensor:
  """Nearest-neighbour align-corners resize of one label map [H, W, 1]."""
  resized = tf.raw_ops.ResizeNearestNeighbor(
      images=label[tf.newaxis], size=size, align_corners=True,
      half_pixel_centers=False)
  return resized[0]


def resize_to_range_size(height, width, *, min_size: int,
                         max_size: Optional[int] = None,
                         factor: Optional[int] = None) -> tf.Tensor:
  """The output size [2] (int32) of the original's `resize_to_range`.

  The short side goes to `min_size` unless that makes the long side exceed
  `max_size`, in which case the long side goes to `max_size`; with a `factor`
  both sides are then rounded up to `factor * k + 1` (and `max_size` is first
  lowered so the rounding cannot push past it). The arithmetic is float32, as
  in the original, so sizes match it exactly.
  """
  if max_size is not None and factor is not None:
    max_size = max_size + (factor - (max_size - 1) % factor) % factor - factor
  height = tf.cast(height, tf.float32)
  width = tf.cast(width, tf.float32)
  large_scale = tf.constant(min_size, tf.float32) / tf.minimum(height, width)
  new_size = tf.cast(
      tf.math.ceil(tf.stack([height, width]) * large_scale), tf.int32)
  if max_size is not None:
    small_scale = tf.constant(max_size, tf.float32) / tf.maximum(height, width)
    small_size = tf.cast(
        tf.math.ceil(tf.stack([height, width]) * small_scale), tf.int32)
    too_large = tf.cast(tf.reduce_max(new_size), tf.float32) > max_size
    new_size = tf.where(too_large, small_size, new_size)
  if factor is not None:
    new_size += (factor - (new_size - 1) % factor) % factor
  return new_size


def resize_to_range(image: tf.Tensor, label: Optional[tf.Tensor], *,
                    min_size: int, max_size: Optional[int] = None,
                    factor: Optional[int] = None):
  """Resizes image (bilinear) and label (nearest) into the size range."""
  shape = tf.shape(image)
  new_size = resize_to_range_size(
      shape[0], shape[1], min_size=min_size, max_size=max_size, factor=factor)
  image = resize_bilinear(image, new_size)
  if label is not None:
    label = resize_nearest(label, new_size)
  return image, label


def random_scale(seed: tf.Tensor, min_scale: float, max_scale: float,
                 step_size: float) -> tf.Tensor:
  """A scale factor: uniform on {min, min+step, ..., max}, or U[min, max) if step is 0."""
  if min_scale < 0 or min_scale > max_scale:
    raise ValueError(
        f'min_scale_factor={min_scale} and max_scale_factor={max_scale}: need '
        '0 <= min_scale_factor <= max_scale_factor.')
  if step_size < 0:
    raise ValueError(f'scale_factor_step_size={step_size} must be >= 0.')
  if min_scale == max_scale:
    return tf.constant(min_scale, tf.float32)
  if step_size == 0:
    return tf.random.stateless_uniform(
        [], seed, minval=min_scale, maxval=max_scale, dtype=tf.float32)
  num_steps = int((max_scale - min_scale) / step_size + 1)
  scales = tf.linspace(tf.constant(min_scale, tf.float32),
                       tf.constant(max_scale, tf.float32), num_steps)
  index = tf.random.stateless_uniform(
      [], seed, minval=0, maxval=num_steps, dtype=tf.int32)
  return scales[index]


def scale_image_and_label(image: tf.Tensor, label: tf.Tensor,
                          scale: tf.Tensor):
  """Resizes to `int(h * scale), int(w * scale)`; always resizes, as the original."""
  size = tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * scale, tf.int32)
  return resize_bilinear(image, size), resize_nearest(label, size)


def pad_bottom_right(tensor: tf.Tensor, target_height, target_width,
                     pad_value) -> tf.Tensor:
  """Pads [H, W, C] at the bottom and right to the target size with `pad_value`.

  Computed as pad(x - value, 0) + value, as the original does, so that even
  interior float pixels carry the same float32 rounding as its inputs.
  """
  shape = tf.shape(tensor)
  paddings = [[0, target_height - shape[0]], [0, target_width - shape[1]],
              [0, 0]]
  pad_value = tf.cast(pad_value, tensor.dtype)
  return tf.pad(tensor - pad_value, paddings) + pad_value


def random_crop(image: tf.Tensor, label: tf.Tensor, crop_height: int,
                crop_width: int, seed: tf.Tensor):
  """The same uniformly placed crop of image and label (both at least crop-sized)."""
  shape = tf.shape(image)
  offset_seeds = tf.random.experimental.stateless_split(seed, num=2)
  offset_y = tf.random.stateless_uniform(
      [], offset_seeds[0], minval=0, maxval=shape[0] - crop_height + 1,
      dtype=tf.int32)
  offset_x = tf.random.stateless_uniform(
      [], offset_seeds[1], minval=0, maxval=shape[1] - crop_width + 1,
      dtype=tf.int32)
  image = tf.slice(image, [offset_y, offset_x, 0], [crop_height, crop_width, -1])
  label = tf.slice(label, [offset_y, offset_x, 0], [crop_height, crop_width, -1])
  return image, label


def random_flip_left_right(image: tf.Tensor, label: tf.Tensor,
                           seed: tf.Tensor):
  """Flips image and label together when u <= 0.5."""
  flip = tf.random.stateless_uniform([], seed) <= _FLIP_PROBABILITY
  image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
  label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
  return image, label


def preprocess_image_and_label(
    image: tf.Tensor,
    label: tf.Tensor,
    *,
    crop_size: Sequence[int],
    is_training: bool,
    seed: Optional[tf.Tensor] = None,
    min_resize_value: Optional[int] = None,
    max_resize_value: Optional[int] = None,
    resize_factor: Optional[int] = None,
    min_scale_factor: float = 1.0,
    max_scale_factor: float = 1.0,
    scale_factor_step_size: float = 0.0,
    ignore_label: int = 255,
    pad_pixel: Sequence[float] = (127.5, 127.5, 127.5),
    name: Optional[tf.Tensor] = None,
):
  """One example through the original DeepLab preprocessing.

  Args:
    image: uint8 (or float) [H, W, 3].
    label: uint8/int [H, W, 1] class ids.
    crop_size: (crop_height, crop_width): the training crop, or the evaluation
      size every image is padded to.
    is_training: random scale, random crop and flip when True.
    seed: [2] int tensor for the stateless random ops; required for training.
    min_resize_value, max_resize_value, resize_factor: the optional
      `resize_to_range` step (ADE20K: 513, 513, 16).
    min_scale_factor, max_scale_factor, scale_factor_step_size: training scales.
    ignore_label: label padding value.
    pad_pixel: image padding value (`mean_pixel(backbone)`).
    name: the example's name, used in error messages.

  Returns:
    (image float32 [crop_h, crop_w, 3] with values 0..255,
     label int32 [crop_h, crop_w, 1]).
  """
  crop_height, crop_width = (int(s) for s in crop_size)
  if name is None:
    name = tf.constant('<unnamed>')
  image = tf.cast(image, tf.float32)
  label = tf.cast(label, tf.int32)
  image_shape = tf.shape(image)
  label_shape = tf.shape(label)
  same_size = tf.debugging.Assert(
      tf.reduce_all(tf.equal(image_shape[:2], label_shape[:2])),
      ['Example', name, ': image size', image_shape[:2],
       'differs from its label size', label_shape[:2]])
  with tf.control_dependencies([same_size]):
    image = tf.identity(image)

  if max_resize_value is not None and min_resize_value is None:
    raise ValueError('max_resize_value is set but min_resize_value is not; '
                     'resize_to_range needs min_resize_value.')
  if min_resize_value is not None:
    image, label = resize_to_range(
        image, label, min_size=min_resize_value, max_size=max_resize_value,
        factor=resize_factor)

  if is_training:
    if seed is None:
      raise ValueError('Training preprocessing needs a per-example seed.')
    scale_seed, crop_seed, flip_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=3))
    scale = random_scale(scale_seed, min_scale_factor, max_scale_factor,
                         scale_factor_step_size)
    image, label = scale_image_and_label(image, label, scale)
  else:
    shape = tf.shape(image)
    fits = tf.debugging.Assert(
        tf.logical_and(shape[0] <= crop_height, shape[1] <= crop_width),
        ['Evaluation image', name, 'has size (after any resize)', shape[:2],
         f'which is larger than eval_crop_size ({crop_height}, {crop_width}). '
         'Raise eval_crop_size (keep it 16k+1) or set min/max_resize_value '
         'so images fit.'])
    with tf.control_dependencies([fits]):
      image = tf.identity(image)

  shape = tf.shape(image)
  target_height = tf.maximum(shape[0], crop_height)
  target_width = tf.maximum(shape[1], crop_width)
  image = pad_bottom_right(image, target_height, target_width,
                           tf.reshape(tf.constant(pad_pixel, tf.float32),
                                      [1, 1, 3]))
  label = pad_bottom_right(label, target_height, target_width, ignore_label)

  if is_training:
    image, label = random_crop(image, label, crop_height, crop_width,
                               crop_seed)
  image = tf.ensure_shape(image, [crop_height, crop_width, 3])
  label = tf.ensure_shape(label, [crop_height, crop_width, 1])
  if is_training:
    image, label = random_flip_left_right(image, label, flip_seed)
  return image, label
