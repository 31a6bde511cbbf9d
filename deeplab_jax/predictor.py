"""Prediction on images of any size, from variables, a workdir or an export.

`make_predict_fn` composes the three steps of `canvas`: fit each image onto
the model's fixed canvas, score it there (`scoring`), map the labels (and
probabilities) back to the image; `Predictor` is the object users call.
"""

from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplab_jax import canvas
from deeplab_jax import config_defaults
from deeplab_jax import export_files
from deeplab_jax import scoring
from deeplab_jax import variables as variables_lib
from deeplab_jax.model import create_model


# --- The prediction function ---------------------------------------------------

def canvas_prediction(model, variables, canvas_images, scales: Sequence[float] = (1.0,),
                      flip: bool = False, with_probabilities: bool = False):
  """Labels [N, h, w] on the canvas, or (labels, probabilities [N, h, w, C]) — step 3.

  With probabilities the labels are their argmax (with one scale and no flip
  the probabilities are the softmax of the upsampled logits).
  """
  if not with_probabilities:
    return scoring.predict_labels(model, variables, canvas_images, scales, flip)
  probabilities = scoring.class_probabilities(model, variables, canvas_images, scales, flip)
  return scoring.argmax_classes(probabilities), probabilities


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
    self.slide_stride = canvas.slide_stride(config)
    if self.slide and resize_long_side is not None:
      raise ValueError(f'resize_long_side={resize_long_side} resizes images for '
                       "config.eval_mode='whole'; slide mode predicts at full size: drop one.")


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
    canvas_images, fitted = canvas.fit_to_canvas(images, options.crop, **options.fit)
    outputs = canvas_prediction(options.model, variables, canvas_images, options.scales,
                                options.flip, with_probabilities)
    return _map_back(outputs, fitted, images.shape[1:3])

  return fn


def _slide_any_size(options, variables, images):
  """Slide mode for sizes that may be symbolic: one crop of padding below and
  right holds every window (windows never pass max(size, crop))."""
  height, width = images.shape[1:3]
  crop_h, crop_w = options.crop
  padded = jnp.pad(images.astype(jnp.float32), ((0, 0), (0, crop_h), (0, crop_w), (0, 0)),
                   constant_values=canvas.MEAN_PIXEL)
  image_hw = jnp.broadcast_to(jnp.stack([jnp.asarray(height, jnp.int32),
                                         jnp.asarray(width, jnp.int32)]), (images.shape[0], 2))
  outputs = scoring.slide_predict(options.model, variables, padded, image_hw, options.crop,
                                  options.slide_stride, options.scales, options.flip,
                                  options.with_probabilities)
  return jax.tree.map(lambda m: m[:, :height, :width], outputs)


def _map_back(outputs, fitted, image_hw):
  return jax.tree.map(lambda m: canvas.back_to_image_size(m, fitted, image_hw), outputs)


# Module-level, so Predictors of equal configs share compiled code.
_fit_stage = jax.jit(canvas.fit_to_canvas,
                     static_argnames=('crop_hw', 'resize_long_side', 'pad_to_crop', 'stride'))
_predict_stage = jax.jit(canvas_prediction, static_argnums=(0, 3, 4, 5))
_back_stage = jax.jit(_map_back, static_argnums=2)
_slide_stage = jax.jit(scoring.slide_predict, static_argnums=(0, 4, 5, 6, 7, 8))


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
      canvas_h, canvas_w = canvas.slide_canvas_size((height, width), options.crop,
                                                    options.slide_stride)
      padded = np.full((images.shape[0], canvas_h, canvas_w, 3), canvas.MEAN_PIXEL, np.float32)
      padded[:, :height, :width] = images
      image_hw = np.tile(np.asarray([[height, width]], np.int32), (images.shape[0], 1))
      outputs = _slide_stage(options.model, variables, padded, image_hw, options.crop,
                             options.slide_stride, options.scales, options.flip,
                             with_probabilities)
      return jax.tree.map(lambda m: m[:, :height, :width], outputs)
    canvas_images, fitted = _fit_stage(images, options.crop, **options.fit)
    outputs = _predict_stage(options.model, variables, canvas_images, options.scales,
                             options.flip, with_probabilities)
    return _back_stage(outputs, fitted, tuple(images.shape[1:3]))

  return fn


# --- Variables -----------------------------------------------------------------

def load_variables(config: ml_collections.ConfigDict, workdir: str, step: Optional[int] = None):
  """(`{'params', 'batch_stats'}`, step) of the latest (or given) checkpoint of a workdir."""
  from deeplab_jax import checkpointing  # pylint: disable=g-import-not-at-top  (pulls in Orbax)
  template = variables_lib.abstract_variables(
      config, jax.sharding.SingleDeviceSharding(jax.local_devices()[0]))
  return checkpointing.restore_variables(workdir, template, step,
                                        ema=bool(config.get('ema_decay')))


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
    config = config_defaults.resolve_eval_crop_size(config.copy_and_resolve_references())
    if check:
      variables_lib.check_variables(config, variables)
    variables = jax.device_put(variables_lib.model_collections(variables))
    options = dict(resize_long_side=resize_long_side, pad_to_crop=pad_to_crop)
    labels_fn = make_staged_predict_fn(config, variables, **options)
    probabilities_fn = make_staged_predict_fn(config, variables, with_probabilities=True,
                                              **options)
    from deeplab_jax.data import datasets  # pylint: disable=g-import-not-at-top  (TF; only here)
    colormap, class_names = datasets.output_facts(config)
    info = dict(num_classes=int(config.model.num_classes),
                crop_size=[int(c) for c in config.eval_crop_size],
                resize_long_side=resize_long_side, pad_to_crop=pad_to_crop,
                eval_scales=[float(s) for s in config.eval_scales],
                eval_flip=bool(config.eval_flip), colormap=colormap, class_names=class_names,
                eval_mode=config.get('eval_mode', 'whole'),
                slide_stride=list(canvas.slide_stride(config)))
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
    call, with_probabilities, info = export_files.read_export(path)

    def probabilities_fn(images):
      outputs = call(images)
      return outputs['labels'], outputs['probabilities']
    return cls(lambda images: call(images)['labels'],
               probabilities_fn if with_probabilities else None, info=info)

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
