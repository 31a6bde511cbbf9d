"""ADE20K scene parsing (the 150-class SceneParsing benchmark) as a TFDS builder.

Reads the official `ADEChallengeData2016.zip` unchanged:

  ADEChallengeData2016/images/{training,validation}/ADE_train_00000001.jpg
  ADEChallengeData2016/annotations/{training,validation}/ADE_train_00000001.png

Annotations are single-channel PNGs whose values are class ids 0..150, where
0 is "other" (not one of the 150 classes) and is the ignore label, as in the
original DeepLab (151 classes, ignore label 0). Labels are stored as they are.

TFDS's own `scene_parse150` is not used: it is a different packaging of the
challenge data and not what the original DeepLab trained on.

Importing this module registers the builder as 'ade20k_scene_parsing'.
"""

import os

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from deeplab_jax.data import tfds_sources

TFDS_NAME = 'ade20k_scene_parsing'
ARCHIVE = 'ADEChallengeData2016.zip'
URL = 'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip'
ROOT = 'ADEChallengeData2016'
IGNORE_LABEL = 0
# Our split name -> the folder name in the archive.
SPLIT_FOLDERS = {'train': 'training', 'validation': 'validation'}
SPLIT_SIZES = {'train': 20210, 'validation': 2000}

# Index = class id; the first name of each row of the benchmark's
# objectInfo150 table, with 'other' (ignored) at 0.
CLASS_NAMES = (
    'other', 'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road',
    'bed', 'windowpane', 'grass', 'cabinet', 'sidewalk', 'person', 'earth',
    'door', 'table', 'mountain', 'plant', 'curtain', 'chair', 'car', 'water',
    'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field',
    'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp',
    'bathtub', 'railing', 'cushion', 'base', 'box', 'column', 'signboard',
    'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace',
    'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case',
    'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill',
    'bench', 'countertop', 'stove', 'palm', 'kitchen island', 'computer',
    'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus', 'towel',
    'light', 'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth',
    'television receiver', 'airplane', 'dirt track', 'apparel', 'pole',
    'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster',
    'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer',
    'plaything', 'swimming pool', 'stool', 'barrel', 'basket', 'waterfall',
    'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step',
    'tank', 'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake',
    'dishwasher', 'screen', 'blanket', 'sculpture', 'hood', 'sconce', 'vase',
    'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate',
    'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock',
    'flag')
NUM_CLASSES = len(CLASS_NAMES)  # 151

_MANUAL_INSTRUCTIONS = f"""\
Put {ARCHIVE}, unchanged, in the manual dir (`config.dataset.manual_dir`):
  {ARCHIVE}  from {URL}
(or its extracted folder {ROOT}/ there instead).
"""


def read_annotation(path) -> np.ndarray:
  """An annotation PNG as uint8 class ids [H, W, 1], checked to be 0..150."""
  try:
    with Image.open(path) as image:
      image.load()
      if image.mode not in ('L', 'P'):
        raise ValueError(
            f'{path}: annotation has mode {image.mode}; ADE20K annotations are '
            'single-channel PNGs of class ids 0..150.')
      ids = np.asarray(image, dtype=np.uint8)
  except (OSError, SyntaxError) as error:
    raise ValueError(f'{path}: unreadable or corrupt annotation ({error}).'
                     ) from error
  if ids.size and ids.max() >= NUM_CLASSES:
    raise ValueError(f'{path}: annotation has class id {ids.max()}; ADE20K '
                     f'ids are 0..{NUM_CLASSES - 1}.')
  return ids[..., np.newaxis]


def _image_feature_value(path):
  """The JPEG path itself when TFDS can store it as is, else RGB pixels.

  A few ADE20K images are greyscale (or CMYK) JPEGs; those are converted so
  every stored image has three channels.
  """
  try:
    with Image.open(path) as image:
      if image.format == 'JPEG' and image.mode == 'RGB':
        return path, (image.height, image.width)
      image.load()
      pixels = np.asarray(image.convert('RGB'), dtype=np.uint8)
  except (OSError, SyntaxError) as error:
    raise ValueError(f'{path}: unreadable or corrupt image ({error}).'
                     ) from error
  return pixels, pixels.shape[:2]


class Ade20kSceneParsing(tfds.core.GeneratorBasedBuilder):
  """ADE20K SceneParsing: 'train' (20,210) and 'validation' (2,000) images."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'ADEChallengeData2016 as released.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_INSTRUCTIONS

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds_sources.segmentation_features(),
        homepage='http://sceneparsing.csail.mit.edu/')

  def _split_generators(self, dl_manager):
    root = tfds_sources.archive_folder(dl_manager, 'ADE20K', ARCHIVE, URL, ROOT,
                                       _MANUAL_INSTRUCTIONS)
    return {split: self._generate_examples(root=root, folder=folder)
            for split, folder in SPLIT_FOLDERS.items()}

  def _generate_examples(self, root, folder):
    images_dir = os.path.join(root, 'images', folder)
    labels_dir = os.path.join(root, 'annotations', folder)
    if not os.path.isdir(images_dir):
      raise FileNotFoundError(f'ADE20K: missing folder {images_dir}.')
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(images_dir)
                   if f.lower().endswith('.jpg'))
    if not names:
      raise ValueError(f'ADE20K: no .jpg images in {images_dir}.')
    for name in names:
      image_path = os.path.join(images_dir, name + '.jpg')
      label_path = os.path.join(labels_dir, name + '.png')
      if not os.path.isfile(label_path):
        raise FileNotFoundError(
            f'ADE20K: missing annotation {label_path} for image {image_path}.')
      image, image_size = _image_feature_value(image_path)
      label = read_annotation(label_path)
      if image_size != label.shape[:2]:
        raise ValueError(f'ADE20K: {image_path} is {image_size} (HxW) but its '
                         f'annotation {label_path} is {label.shape[:2]}.')
      yield name, {'image': image, 'label': label, 'name': name}
