"""Segment image files with a trained model: label PNGs and overlays.

Each image is padded at the bottom/right to `config.eval_crop_size` (with the
backbone's mean pixel, as evaluation does); an image larger than the crop is
first resized to fit it (aspect kept), and its labels are resized back to the
original size with nearest neighbour. Outputs per input `<stem>`:
`<stem>.png` (class ids, palette PNG in the dataset's colormap; label ids as a
grayscale PNG with `cityscapes_label_ids`) and `<stem>_overlay.png`.
"""

import glob
import os
from typing import List, Sequence, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from deeplab_jax import checkpointing
from deeplab_jax import colormaps
from deeplab_jax import visualize
from deeplab_jax.data.preprocessing import mean_pixel
from deeplab_jax.inference import predict_labels
from deeplab_jax.model import create_model

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm')


def find_images(pattern: str) -> List[str]:
  """Image files of a path, a directory (its image files) or a glob pattern."""
  pattern = os.path.expanduser(pattern)
  if os.path.isdir(pattern):
    paths = [os.path.join(pattern, name) for name in os.listdir(pattern)
             if name.lower().endswith(IMAGE_EXTENSIONS)]
  elif os.path.isfile(pattern):
    paths = [pattern]
  else:
    paths = [p for p in glob.glob(pattern) if os.path.isfile(p)]
  if not paths:
    raise FileNotFoundError(f'--images={pattern!r}: no such file, and no image files match it.')
  return sorted(paths)


def read_image(path: str) -> np.ndarray:
  """uint8 RGB [H, W, 3]; a clear error naming the file if it is not an image."""
  try:
    with Image.open(path) as picture:
      return np.array(picture.convert('RGB'), np.uint8)
  except (OSError, ValueError, SyntaxError) as e:
    raise ValueError(f'{path}: cannot read this file as an image ({e}).') from e


def fit_size(height: int, width: int, crop: Sequence[int]) -> Tuple[int, int]:
  """The size an image gets so that it fits in the crop (unchanged if it does)."""
  scale = min(crop[0] / height, crop[1] / width, 1.0)
  if scale == 1.0:
    return height, width
  return (min(crop[0], max(1, int(round(height * scale)))),
          min(crop[1], max(1, int(round(width * scale)))))


def pad_to_crop(image: np.ndarray, crop: Sequence[int], pad_pixel) -> np.ndarray:
  padded = np.empty((crop[0], crop[1], 3), np.float32)
  padded[...] = np.asarray(pad_pixel, np.float32)
  padded[:image.shape[0], :image.shape[1]] = image
  return padded


class Predictor:
  """Class ids [H, W] for uint8 RGB images of any size, at the eval crop."""

  def __init__(self, config, variables):
    self.crop = tuple(int(s) for s in config.eval_crop_size)
    self.pad_pixel = mean_pixel(config.model.backbone)
    model = create_model(config)
    scales, flip = tuple(config.eval_scales), bool(config.eval_flip)
    self._variables = variables
    self._predict = jax.jit(lambda v, x: predict_labels(model, v, x, scales, flip))

  def __call__(self, image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    fitted = fit_size(height, width, self.crop)
    resized = image
    if fitted != (height, width):
      resized = np.array(Image.fromarray(image).resize((fitted[1], fitted[0]), Image.BILINEAR))
    batch = pad_to_crop(resized.astype(np.float32), self.crop, self.pad_pixel)[None]
    labels = np.asarray(self._predict(self._variables, jnp.asarray(batch)))[0]
    labels = labels[:fitted[0], :fitted[1]].astype(np.uint8)
    if fitted != (height, width):
      labels = np.array(Image.fromarray(labels).resize((width, height), Image.NEAREST))
    return labels


def predict_images(config, workdir: str, images: str, output: str, *,
                   cityscapes_label_ids: bool = False) -> List[str]:
  """Writes label PNGs and overlays of `images` into `output`; returns the paths."""
  from deeplab_jax import evaluate  # pylint: disable=g-import-not-at-top
  from deeplab_jax import train  # pylint: disable=g-import-not-at-top
  paths = find_images(images)
  for path in paths:  # Fail before the model loads, naming the bad file.
    if not os.access(path, os.R_OK):
      raise PermissionError(f'{path}: not readable.')
  mesh = train.make_mesh(jax.local_devices()[:1])
  template = train.initial_variables(config, mesh)
  variables, step = checkpointing.restore_variables(workdir, template)
  logging.info('Predicting %d images with the checkpoint of step %d.', len(paths), step)
  _, colormap = evaluate.dataset_info(config)
  predictor = Predictor(config, variables)
  os.makedirs(output, exist_ok=True)
  written = []
  for path in paths:
    image = read_image(path)
    labels = predictor(image)
    stem = os.path.splitext(os.path.basename(path))[0]
    label_path = os.path.join(output, stem + '.png')
    if cityscapes_label_ids:
      # Grayscale label ids, the format of the Cityscapes evaluation server.
      Image.fromarray(colormaps.cityscapes_train_id_to_label_id(labels).astype(np.uint8)).save(
          label_path)
    else:
      visualize.save_label_png(label_path, labels, colormap)
    overlay_path = os.path.join(output, stem + '_overlay.png')
    Image.fromarray(visualize.overlay(image, labels, colormap)).save(overlay_path)
    written += [label_path, overlay_path]
  return written
