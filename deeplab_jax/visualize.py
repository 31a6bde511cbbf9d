"""Host-side pictures of segmentations: label PNGs, overlays, comparison panels.

Label maps are written as palette PNGs: the stored pixel values are the class
ids (machine-readable, like the original's raw predictions) and the palette is
the dataset colormap (viewable, like its colour-mapped predictions), so one
file serves both purposes.
"""

import os

import numpy as np
from PIL import Image

from deeplab_jax import colormaps


def _label_map(labels, name: str = 'labels') -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim == 3 and labels.shape[-1] == 1:
    labels = labels[..., 0]
  if labels.ndim != 2:
    raise ValueError(f'{name} must be [H, W] or [H, W, 1], got shape {labels.shape}.')
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{name} must be integer class ids, got dtype {labels.dtype}.')
  return labels


def _rgb_image(image) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f'image must be uint8, got dtype {image.dtype}.')
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f'image must be [H, W], [H, W, 1] or [H, W, 3], got shape {image.shape}.')
  return np.broadcast_to(image, image.shape[:2] + (3,))


def save_label_png(path: str, labels, colormap_name: str) -> None:
  """Writes class ids [H, W] as a palette PNG coloured by `colormap_name`."""
  labels = _label_map(labels)
  colormap = colormaps.get_colormap(colormap_name)
  if labels.size and (labels.min() < 0 or labels.max() >= len(colormap)):
    raise ValueError(f'Cannot write {path}: labels range over [{labels.min()}, {labels.max()}] '
                     f'but the {colormap_name!r} colormap has {len(colormap)} entries.')
  palette = np.zeros((256, 3), np.uint8)
  palette[:len(colormap)] = colormap
  # uint8 [H, W] is an 'L' image; converting L to P keeps every value as the index.
  picture = Image.fromarray(labels.astype(np.uint8)).convert('P')
  picture.putpalette(palette.reshape(-1).tolist())
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  picture.save(path, format='PNG')


def read_label_png(path: str) -> np.ndarray:
  """Class ids uint8 [H, W] of a palette ('P') or grayscale ('L') PNG."""
  with Image.open(path) as picture:
    if picture.mode not in ('P', 'L'):
      raise ValueError(f'{path} is a {picture.mode!r} image; label PNGs must be palette (P) '
                       'or grayscale (L) images whose pixel values are class ids.')
    return np.array(picture, np.uint8)


def overlay(image_uint8, labels, colormap_name: str, alpha: float = 0.5,
            ignore_label: int = 255) -> np.ndarray:
  """The image with label colours blended in at `alpha`; ignored pixels untouched.

  Args:
    image_uint8: [H, W, 3] (or grayscale [H, W] / [H, W, 1]) uint8.
    labels: [H, W] or [H, W, 1] class ids.
    colormap_name: see `colormaps.get_colormap`.
    alpha: weight of the label colour, in [0, 1].
    ignore_label: pixels with this label keep the image's colour.

  Returns:
    uint8 [H, W, 3].
  """
  image = _rgb_image(image_uint8)
  labels = _label_map(labels)
  if image.shape[:2] != labels.shape:
    raise ValueError(f'image {image.shape[:2]} and labels {labels.shape} differ in size.')
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f'alpha must be in [0, 1], got {alpha}.')
  ignored = labels == ignore_label
  colors = colormaps.colorize(np.where(ignored, 0, labels), colormap_name).astype(np.float32)
  blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
  blended = np.clip(np.round(blended), 0, 255).astype(np.uint8)
  return np.where(ignored[..., None], image, blended)


def comparison_panel(image, ground_truth, prediction, colormap_name: str, alpha: float = 0.5,
                     ignore_label: int = 255) -> np.ndarray:
  """uint8 [H, 3W, 3]: image | ground-truth overlay | prediction overlay."""
  image = _rgb_image(image)
  return np.concatenate([
      image,
      overlay(image, ground_truth, colormap_name, alpha, ignore_label),
      overlay(image, prediction, colormap_name, alpha, ignore_label),
  ], axis=1)
