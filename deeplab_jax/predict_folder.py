"""Segment image files with a trained model: label PNGs and overlays.

`deeplab_jax.Predictor` pads each image at the bottom/right to
`config.eval_crop_size` (with the mean pixel, as evaluation does); an image
larger than the crop is first resized to fit it (aspect kept), and its labels
are resized back to the original size with nearest neighbour; with
`config.eval_mode='slide'` it is instead covered by windows of the crop at full
resolution (`scoring.slide_predict`). Outputs per input `<stem>`:
`<stem>.png` (class ids, palette PNG in the dataset's colormap; label ids as a
grayscale PNG with `cityscapes_label_ids`, and then no overlays) and
`overlays/<stem>.png`, plus `prediction_info.json` listing them.

No output ever overwrites an input, another output, or a file that an
earlier prediction did not write: such a run is refused before it writes.
"""

import glob
import json
import os
from typing import List, NamedTuple, Optional, Sequence

from absl import logging
import numpy as np
from PIL import Image

from deeplab_jax import colormaps
from deeplab_jax import image_files
from deeplab_jax import visualize
from deeplab_jax.predictor import Predictor

OVERLAY_SUBDIR = 'overlays'
# Lists what predictions wrote into a folder: a rerun may overwrite those, and nothing else.
INFO_FILE = 'prediction_info.json'
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


class Written(NamedTuple):
  """What `predict_images` wrote."""
  labels: List[str]
  overlays: List[str]
  step: Optional[int]  # The checkpoint's step.

  def summary(self) -> str:
    overlays = f' and {len(self.overlays)} overlays' if self.overlays else ''
    return f'{len(self.labels)} label PNGs{overlays}'


def _previous_outputs(output: str) -> set:
  """Files an earlier prediction into `output` wrote (its INFO_FILE lists them)."""
  path = os.path.join(output, INFO_FILE)
  if not os.path.isfile(path):
    return set()
  try:
    with open(path) as f:
      return {os.path.join(output, name) for name in json.load(f)['files']}
  except (OSError, ValueError, KeyError, TypeError) as error:
    raise ValueError(f'{path} is not a readable prediction record ({error}); choose another '
                     '--output, or remove the folder if its files are not needed.') from error


def plan_outputs(paths: Sequence[str], output: str, *, with_overlays: bool = True):
  """[(input, label path, overlay path or None)]; refuses any output that would
  overwrite an input, another output, or a file an earlier prediction did not write."""
  if os.path.exists(output) and not os.path.isdir(output):
    raise ValueError(f'--output={output} is a file, not a folder.')
  inputs = {os.path.realpath(p): p for p in paths}
  ours = _previous_outputs(output)
  plan, claimed = [], {}
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    outputs = [os.path.join(output, stem + '.png')]
    if with_overlays:
      outputs.append(os.path.join(output, OVERLAY_SUBDIR, stem + '.png'))
    for target in outputs:
      real = os.path.realpath(target)
      if real in inputs:
        raise ValueError(f'{target} would overwrite the input image {inputs[real]}: choose an '
                         '--output folder that holds none of the --images.')
      if real in claimed:
        raise ValueError(f'{claimed[real]} and {path} would both be written as {target} (same '
                         'name up to the extension): rename one, or predict them separately.')
      if os.path.exists(target) and target not in ours:
        raise ValueError(f'{target} exists and was not written by an earlier prediction: '
                         'choose an empty or new --output folder.')
      claimed[real] = path
    plan.append((path, outputs[0], outputs[1] if with_overlays else None))
  return plan


def _write_record(output: str, plan, step) -> None:
  """Lists the files this run (and earlier ones) write, before any is written."""
  files = _previous_outputs(output) | {p for _, *targets in plan for p in targets if p}
  record = {'step': step, 'files': sorted(os.path.relpath(p, output) for p in files)}
  path = os.path.join(output, INFO_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(record, f, indent=1)
  os.replace(path + '.tmp', path)


def predict_images(config, workdir: str, images: str, output: str, *,
                   cityscapes_label_ids: bool = False) -> Written:
  """Writes label PNGs (and overlays) of `images` into `output`.

  With `cityscapes_label_ids` only the label-id PNGs are written: the official
  evaluator reads every PNG under its results folder.
  """
  paths = find_images(images)
  for path in paths:  # Fail before the model loads, naming the bad file.
    if not os.access(path, os.R_OK):
      raise PermissionError(f'{path}: not readable.')
  output = os.path.abspath(output)
  plan = plan_outputs(paths, output, with_overlays=not cityscapes_label_ids)
  predictor = Predictor.from_workdir(config, workdir)
  step = predictor.info.get('step')
  logging.info('Predicting %d images with the checkpoint of step %s.', len(paths), step)
  colormap = predictor.colormap
  os.makedirs(os.path.join(output, OVERLAY_SUBDIR) if not cityscapes_label_ids else output,
              exist_ok=True)
  _write_record(output, plan, step)
  written = Written([], [], step)
  for index, (path, label_path, overlay_path) in enumerate(plan):
    image = image_files.read_rgb(path)
    labels = predictor.predict(image)
    if cityscapes_label_ids:
      # Grayscale label ids, the format of the Cityscapes evaluation server.
      Image.fromarray(colormaps.cityscapes_train_id_to_label_id(labels).astype(np.uint8)).save(
          label_path)
    else:
      visualize.save_label_png(label_path, labels, colormap)
      Image.fromarray(visualize.overlay(image, labels, colormap)).save(overlay_path)
      written.overlays.append(overlay_path)
    written.labels.append(label_path)
    if (index + 1) % 50 == 0:
      logging.info('Predicted %d of %d images.', index + 1, len(plan))
  return written
