"""Prediction on images of any size, from variables, a workdir or an export.

The model derives every internal size from the static shape of its input, as
the original derives them from the crop, so it runs on a fixed *canvas*:

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
3. `config.eval_scales` / `config.eval_flip` prediction runs on the canvas
   (`inference.predict_labels` / `class_probabilities`).
4. The labels (and probabilities) of the image's region are mapped back to
   the input size with nearest-neighbour align-corners (an identity when the
   image was not resized).

With `config.eval_mode='slide'` no image is resized: windows of the crop size,
`config.eval_slide_stride` apart, cover it at full resolution
(`inference.slide_predict`), and the canvas only pads it (to a whole number of
strides beyond the crop in the Predictor, by one crop in the export).

The sizes in steps 1 and 4 are computed with jnp from the input's shape, so
the same function also lowers with symbolic height and width (`export.py`).
"""

import json
import os
from typing import Optional, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplab_jax import inference
from deeplab_jax.model import create_model

# Maps to 0 after `model.normalize_images` ((2/255)·x − 1), which every
# backbone the model builds uses.
MEAN_PIXEL = 127.5
EXPORT_FILE = 'deeplab.jax_export'
INFO_FILE = 'export_info.json'


# --- Sizes ---------------------------------------------------------------------

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


def _align_corners_scale(in_size, out_size):
  """TF1's float32 `(in − 1) / (out − 1)`, 0 for a single output."""
  in_size = jnp.asarray(in_size, jnp.float32)
  out_size = jnp.asarray(out_size, jnp.float32)
  return jnp.where(out_size > 1, (in_size - 1) / jnp.maximum(out_size - 1, 1), 0.0)


def _broadcast_along(v, axis: int, ndim: int):
  shape = [1] * ndim
  shape[axis] = -1
  return v.reshape(shape)


def _bilinear_into(x, axis: int, out_size, length: int):
  """`length` entries along `axis`; the first `out_size` are the align-corners
  bilinear resize of x to `out_size` (a traced int), the rest are filler."""
  in_size = x.shape[axis]
  src = jnp.arange(length, dtype=jnp.float32) * _align_corners_scale(in_size, out_size)
  lower = jnp.minimum(jnp.floor(src).astype(jnp.int32), in_size - 1)
  upper = jnp.minimum(lower + 1, in_size - 1)
  frac = _broadcast_along(src - lower.astype(jnp.float32), axis, x.ndim)
  low = jnp.take(x, lower, axis=axis, mode='clip')
  high = jnp.take(x, upper, axis=axis, mode='clip')
  return low + (high - low) * frac


def place_on_canvas(images, fitted_hw, canvas_hw: Tuple[int, int]):
  """float32 [N, *canvas_hw, 3]: images resized to `fitted_hw`, padded with 127.5."""
  x = images.astype(jnp.float32)
  x = _bilinear_into(x, 1, fitted_hw[0], canvas_hw[0])
  x = _bilinear_into(x, 2, fitted_hw[1], canvas_hw[1])
  rows = jnp.arange(canvas_hw[0])[None, :, None, None] < fitted_hw[0]
  cols = jnp.arange(canvas_hw[1])[None, None, :, None] < fitted_hw[1]
  return jnp.where(rows & cols, x, jnp.float32(MEAN_PIXEL))


def back_to_image_size(maps, fitted_hw, image_hw):
  """Nearest align-corners resize of the fitted region of `maps` [N, h, w, ...]
  (labels or probabilities on the canvas) to `image_hw`."""
  for axis, (fitted, size) in enumerate(zip(fitted_hw, image_hw), start=1):
    src = jnp.floor(jnp.arange(size, dtype=jnp.float32) * _align_corners_scale(fitted, size)
                    + 0.5).astype(jnp.int32)
    maps = jnp.take(maps, jnp.minimum(src, fitted - 1), axis=axis, mode='clip')
  return maps


# --- The prediction function ---------------------------------------------------

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


def canvas_prediction(model, variables, canvas_images, scales: Sequence[float] = (1.0,),
                      flip: bool = False, with_probabilities: bool = False):
  """Labels [N, h, w] on the canvas, or (labels, probabilities [N, h, w, C]) — step 3.

  With probabilities the labels are their argmax (with one scale and no flip
  the probabilities are the softmax of the upsampled logits).
  """
  if not with_probabilities:
    return inference.predict_labels(model, variables, canvas_images, scales, flip)
  probabilities = inference.class_probabilities(model, variables, canvas_images, scales, flip)
  return inference.argmax_classes(probabilities), probabilities


class _Options:
  """What a config fixes about prediction."""

  def __init__(self, config: ml_collections.ConfigDict, resize_long_side: Optional[int],
               pad_to_crop: bool, with_probabilities: bool = False):
    if resize_long_side is not None and int(resize_long_side) < 1:
      raise ValueError(f'resize_long_side={resize_long_side} must be a positive number of pixels.')
    self.model = create_model(config)
    self.with_probabilities = with_probabilities
    self.crop = tuple(int(c) for c in config.eval_crop_size)
    self.scales = tuple(float(s) for s in config.eval_scales)
    self.flip = bool(config.eval_flip)
    self.fit = dict(resize_long_side=resize_long_side, pad_to_crop=pad_to_crop,
                    stride=int(config.model.output_stride))
    self.slide = config.get('eval_mode', 'whole') == 'slide'
    self.slide_stride = slide_stride(config)
    if self.slide and resize_long_side is not None:
      raise ValueError(f'resize_long_side={resize_long_side} resizes images for '
                       "config.eval_mode='whole'; slide mode predicts at full size: drop one.")


def slide_stride(config: ml_collections.ConfigDict) -> Tuple[int, int]:
  """`config.eval_slide_stride`, or two thirds of the crop (mmseg's choice) when None."""
  stride = config.get('eval_slide_stride')
  if stride is None:
    return tuple(max(1, (2 * int(c)) // 3) for c in config.eval_crop_size)
  return tuple(int(s) for s in stride)


def _check_images(images):
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'images must be [N, H, W, 3], got shape {images.shape}.')


def make_predict_fn(config: ml_collections.ConfigDict, *, resize_long_side: Optional[int] = None,
                    pad_to_crop: bool = True, with_probabilities: bool = False):
  """`fn(variables, images)` for uint8 images [N, H, W, 3] of any size.

  Returns int32 labels [N, H, W], or (labels, float32 probabilities
  [N, H, W, C]) with `with_probabilities`. Pure and jit-able as one function
  (what `export.py` serializes); H and W may be symbolic when `pad_to_crop`.
  """
  options = _Options(config, resize_long_side, pad_to_crop, with_probabilities)

  def fn(variables, images):
    _check_images(images)
    if options.slide:
      return _slide_any_size(options, variables, images)
    canvas_images, fitted = fit_to_canvas(images, options.crop, **options.fit)
    outputs = canvas_prediction(options.model, variables, canvas_images, options.scales,
                                options.flip, with_probabilities)
    return _map_back(outputs, fitted, images.shape[1:3])

  return fn


def _slide_any_size(options, variables, images):
  """Slide mode for sizes that may be symbolic: one crop of padding below and
  right holds every window (windows never pass max(size, crop))."""
  height, width = images.shape[1:3]
  crop_h, crop_w = options.crop
  canvas = jnp.pad(images.astype(jnp.float32), ((0, 0), (0, crop_h), (0, crop_w), (0, 0)),
                   constant_values=MEAN_PIXEL)
  image_hw = jnp.broadcast_to(jnp.stack([jnp.asarray(height, jnp.int32),
                                         jnp.asarray(width, jnp.int32)]), (images.shape[0], 2))
  outputs = inference.slide_predict(options.model, variables, canvas, image_hw, options.crop,
                                    options.slide_stride, options.scales, options.flip,
                                    options.with_probabilities)
  return jax.tree.map(lambda m: m[:, :height, :width], outputs)


def _map_back(outputs, fitted, image_hw):
  return jax.tree.map(lambda m: back_to_image_size(m, fitted, image_hw), outputs)


# Module-level, so Predictors of equal configs share compiled code.
_fit_stage = jax.jit(fit_to_canvas,
                     static_argnames=('crop_hw', 'resize_long_side', 'pad_to_crop', 'stride'))
_predict_stage = jax.jit(canvas_prediction, static_argnums=(0, 3, 4, 5))
_back_stage = jax.jit(_map_back, static_argnums=2)
_slide_stage = jax.jit(inference.slide_predict, static_argnums=(0, 4, 5, 6, 7, 8))


def make_staged_predict_fn(config: ml_collections.ConfigDict, variables, *,
                           resize_long_side: Optional[int] = None, pad_to_crop: bool = True,
                           with_probabilities: bool = False):
  """`make_predict_fn` with `variables` as three jitted stages: `images → outputs`.

  Only the cheap fitting and mapping-back stages compile per image size; the
  model compiles once per canvas (once in all with `pad_to_crop`).
  """
  options = _Options(config, resize_long_side, pad_to_crop, with_probabilities)

  def fn(images):
    _check_images(images)
    if options.slide:  # Compiles once per canvas, a whole number of strides beyond the crop.
      height, width = images.shape[1:3]
      canvas_h, canvas_w = inference.slide_canvas_size((height, width), options.crop,
                                                       options.slide_stride)
      canvas = np.full((images.shape[0], canvas_h, canvas_w, 3), MEAN_PIXEL, np.float32)
      canvas[:, :height, :width] = images
      image_hw = np.tile(np.asarray([[height, width]], np.int32), (images.shape[0], 1))
      outputs = _slide_stage(options.model, variables, canvas, image_hw, options.crop,
                             options.slide_stride, options.scales, options.flip,
                             with_probabilities)
      return jax.tree.map(lambda m: m[:, :height, :width], outputs)
    canvas_images, fitted = _fit_stage(images, options.crop, **options.fit)
    outputs = _predict_stage(options.model, variables, canvas_images, options.scales,
                             options.flip, with_probabilities)
    return _back_stage(outputs, fitted, tuple(images.shape[1:3]))

  return fn


# --- Variables -----------------------------------------------------------------

def _variable_shapes(tree, prefix: str):
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    flat[f'{prefix}/{name}'] = tuple(np.shape(leaf))
  return flat


def variables_template(config: ml_collections.ConfigDict):
  """`{'params', 'batch_stats'}` of the config's model as ShapeDtypeStructs on
  the first local device (what a restore needs; nothing is computed)."""
  model = create_model(config)
  shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 33, 33, 3), jnp.float32), train=False))
  sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        shapes)
  return {'params': shapes['params'], 'batch_stats': shapes.get('batch_stats', {})}


def check_variables(config: ml_collections.ConfigDict, variables) -> None:
  """Raises ValueError naming the variables that do not fit the config's model."""
  if not isinstance(variables, dict) or 'params' not in variables:
    raise ValueError("variables must be a dict with 'params' (and 'batch_stats').")
  template = variables_template(config)
  expected, given = {}, {}
  for item in ('params', 'batch_stats'):
    expected.update(_variable_shapes(template[item], item))
    given.update(_variable_shapes(variables.get(item, {}), item))
  problems = [f'{n}: missing' for n in sorted(set(expected) - set(given))]
  problems += [f'{n}: not in the model' for n in sorted(set(given) - set(expected))]
  problems += [f'{n}: shape {given[n]}, the model wants {expected[n]}'
               for n in sorted(set(given) & set(expected)) if given[n] != expected[n]]
  if problems:
    shown = '\n  '.join(problems[:20])
    raise ValueError(f'The variables do not match the model of the config '
                     f'({config.model.backbone}, {config.model.num_classes} classes; '
                     f'{len(problems)} differences):\n  {shown}')


def load_variables(config: ml_collections.ConfigDict, workdir: str, step: Optional[int] = None):
  """(`{'params', 'batch_stats'}`, step) of the latest (or given) checkpoint of a workdir."""
  from deeplab_jax import checkpointing  # pylint: disable=g-import-not-at-top  (pulls in Orbax)
  return checkpointing.restore_variables(workdir, variables_template(config), step,
                                        ema=bool(config.get('ema_decay')))


# --- Dataset facts for the outputs -----------------------------------------------

_COLORMAP_OF_DATASET = {'pascal_voc': 'pascal', 'cityscapes': 'cityscapes', 'ade20k': 'ade20k'}


def dataset_facts(config: ml_collections.ConfigDict):
  """(colormap name, class names or None) of `config.dataset`, without reading data if possible."""
  name = str(config.dataset.name)
  try:
    from deeplab_jax.data import datasets  # pylint: disable=g-import-not-at-top
    info = datasets.get_dataset_info(config.dataset)
    return info.colormap, list(info.class_names)
  except Exception as error:  # pylint: disable=broad-except  (TFDS raises many types)
    # e.g. a custom dataset whose folder is not on this machine: the
    # colormap is all that outputs need, and the name tells it.
    logging.info('No dataset info for %s (%s); naming the colormap from the name.', name, error)
    return _COLORMAP_OF_DATASET.get(name.partition('/')[0], 'pascal'), None


# --- The Predictor ----------------------------------------------------------------

def _as_batch(image) -> Tuple[np.ndarray, bool]:
  """(uint8 [N, H, W, 3], whether a single [H, W, 3] image was given)."""
  array = np.asarray(image)
  if array.dtype != np.uint8:
    raise ValueError(f'image must be uint8 RGB (0..255), got dtype {array.dtype}; convert it '
                     "first, e.g. np.asarray(PIL.Image.open(path).convert('RGB')).")
  single = array.ndim == 3
  if array.ndim not in (3, 4) or array.shape[-1] != 3:
    raise ValueError(f'image must be [H, W, 3] (or a batch [N, H, W, 3]) RGB, got shape '
                     f"{array.shape}; grey or RGBA images need .convert('RGB') first.")
  if min(array.shape[:-1]) < 1:
    raise ValueError(f'image has an empty dimension: shape {array.shape}.')
  return (array[None] if single else array), single


class Predictor:
  """Class ids (and probabilities) for uint8 RGB images of any size.

  Build it with `from_variables`, `from_workdir` or `from_export`. Calls are
  jit-compiled once per input shape (the first call of a shape is slow).
  """

  def __init__(self, labels_fn, probabilities_fn=None, *, info=None):
    """Prefer the `from_*` constructors.

    labels_fn: uint8 [N, H, W, 3] → int32 [N, H, W].
    probabilities_fn: uint8 [N, H, W, 3] → (labels, float32 [N, H, W, C]), or None.
    info: facts for users (num_classes, crop_size, colormap, class_names, ...).
    """
    self._labels_fn = labels_fn
    self._probabilities_fn = probabilities_fn
    self.info = dict(info or {})

  @property
  def num_classes(self) -> Optional[int]:
    return self.info.get('num_classes')

  @property
  def colormap(self) -> str:
    """Name for `colormaps.get_colormap` / `visualize`."""
    return self.info.get('colormap', 'pascal')

  @property
  def class_names(self) -> Optional[Sequence[str]]:
    return self.info.get('class_names')

  # --- Constructors ---
  @classmethod
  def from_variables(cls, config: ml_collections.ConfigDict, variables, *,
                     resize_long_side: Optional[int] = None, pad_to_crop: bool = True,
                     check: bool = True) -> 'Predictor':
    """In-process prediction with `{'params', 'batch_stats'}` of the config's model."""
    if check:
      check_variables(config, variables)
    variables = jax.device_put({'params': variables['params'],
                                'batch_stats': variables.get('batch_stats', {})})
    options = dict(resize_long_side=resize_long_side, pad_to_crop=pad_to_crop)
    labels_fn = make_staged_predict_fn(config, variables, **options)
    probabilities_fn = make_staged_predict_fn(config, variables, with_probabilities=True,
                                              **options)
    colormap, class_names = dataset_facts(config)
    info = dict(num_classes=int(config.model.num_classes),
                crop_size=[int(c) for c in config.eval_crop_size],
                resize_long_side=resize_long_side, pad_to_crop=pad_to_crop,
                eval_scales=[float(s) for s in config.eval_scales],
                eval_flip=bool(config.eval_flip), colormap=colormap, class_names=class_names,
                eval_mode=config.get('eval_mode', 'whole'), slide_stride=list(slide_stride(config)))
    return cls(labels_fn, probabilities_fn, info=info)

  @classmethod
  def from_workdir(cls, config: ml_collections.ConfigDict, workdir: str, *,
                   step: Optional[int] = None, resize_long_side: Optional[int] = None,
                   pad_to_crop: bool = True) -> 'Predictor':
    """The latest (or given) checkpoint in `<workdir>/checkpoints`."""
    variables, found_step = load_variables(config, workdir, step)
    predictor = cls.from_variables(config, variables, resize_long_side=resize_long_side,
                                   pad_to_crop=pad_to_crop, check=False)
    predictor.info['step'] = found_step
    return predictor

  @classmethod
  def from_export(cls, path: str) -> 'Predictor':
    """A `deeplab.jax_export` file, or the export directory holding it.

    Needs neither the config nor the model code; reads `export_info.json`
    beside the file when it is there.
    """
    path = os.fspath(path)
    file = os.path.join(path, EXPORT_FILE) if os.path.isdir(path) else path
    if not os.path.isfile(file):
      raise FileNotFoundError(f'No exported model at {file} (write one with --mode=export).')
    with open(file, 'rb') as f:
      try:
        exported = jax.export.deserialize(bytearray(f.read()))
      except Exception as error:  # pylint: disable=broad-except  (flatbuffer/MLIR errors vary)
        raise ValueError(f'{file} is not a jax.export artifact: {error}') from error
    output_names = jax.tree.unflatten(exported.out_tree, range(len(exported.out_avals)))
    if not isinstance(output_names, dict) or 'labels' not in output_names:
      raise ValueError(f'{file} was not written by deeplab_jax.export (outputs {output_names}).')
    info_file = os.path.join(os.path.dirname(file), INFO_FILE)
    info = {}
    if os.path.isfile(info_file):
      with open(info_file) as f:
        info = json.load(f)
    call = jax.jit(exported.call)

    def probabilities_fn(images):
      outputs = call(images)
      return outputs['labels'], outputs['probabilities']
    return cls(lambda images: call(images)['labels'],
               probabilities_fn if 'probabilities' in output_names else None, info=info)

  # --- Prediction ---
  def predict(self, image) -> np.ndarray:
    """int32 class ids [H, W] of a uint8 [H, W, 3] image (or [N, H, W] of a batch)."""
    batch, single = _as_batch(image)
    labels = np.asarray(self._labels_fn(batch))
    return labels[0] if single else labels

  def predict_probabilities(self, image) -> Tuple[np.ndarray, np.ndarray]:
    """(int32 class ids [H, W], float32 class probabilities [H, W, C]); batched alike."""
    if self._probabilities_fn is None:
      raise ValueError('This model was exported without probabilities; export it again with '
                       'with_probabilities=True.')
    batch, single = _as_batch(image)
    labels, probabilities = (np.asarray(a) for a in self._probabilities_fn(batch))
    return (labels[0], probabilities[0]) if single else (labels, probabilities)
