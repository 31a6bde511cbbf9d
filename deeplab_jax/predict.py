"""Segment image files with a trained model: label PNGs and overlays.

`deeplab_jax.Predictor` pads each image at the bottom/right to
`config.eval_crop_size` (with the mean pixel, as evaluation does); an image
larger than the crop is first resized to fit it (aspect kept), and its labels
are resized back to the original size with nearest neighbour. Outputs per input `<stem>`:
`<stem>.png` (class ids, palette PNG in the dataset's colormap; label ids as a
grayscale PNG with `cityscapes_label_ids`) and `<stem>_overlay.png`.
"""

import glob
import os
from typing import List

from absl import logging
import numpy as np
from PIL import Image

from deeplab_jax import colormaps
from deeplab_jax import image_files
from deeplab_jax import visualize
from deeplab_jax.predictor import Predictor

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


def predict_images(config, workdir: str, images: str, output: str, *,
                   cityscapes_label_ids: bool = False) -> List[str]:
  """Writes label PNGs and overlays of `images` into `output`; returns the paths."""
  from deeplab_jax import evaluate  # pylint: disable=g-import-not-at-top
  paths = find_images(images)
  for path in paths:  # Fail before the model loads, naming the bad file.
    if not os.access(path, os.R_OK):
      raise PermissionError(f'{path}: not readable.')
  predictor = Predictor.from_workdir(config, workdir)
  logging.info('Predicting %d images with the checkpoint of step %s.', len(paths),
               predictor.info.get('step'))
  _, colormap = evaluate.dataset_info(config)
  os.makedirs(output, exist_ok=True)
  written = []
  for path in paths:
    image = image_files.read_rgb(path)
    labels = predictor.predict(image)
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
