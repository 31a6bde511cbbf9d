"""Cityscapes fine semantic segmentation through TFDS, mapped to the 19 train ids.

TFDS `cityscapes/semantic_segmentation` reads `leftImg8bit_trainvaltest.zip`
and `gtFine_trainvaltest.zip` from the manual dir and stores the RAW label ids
(0..33) of `*_gtFine_labelIds.png`. The original DeepLab trained on
`*_gtFine_labelTrainIds.png` instead (train ids 0..18, all else 255), so every
label is sent through the table below on the fly.
"""

import collections

import numpy as np
import tensorflow as tf

TFDS_NAME = 'cityscapes/semantic_segmentation'
ARCHIVES = ('leftImg8bit_trainvaltest.zip', 'gtFine_trainvaltest.zip')
IGNORE_LABEL = 255
SPLIT_SIZES = {'train': 2975, 'validation': 500, 'test': 1525}

CityscapesClass = collections.namedtuple(
    'CityscapesClass', ['name', 'label_id', 'train_id', 'category', 'color'])

# The official table (cityscapesScripts labels.py): every raw id, its train id
# (255 = not evaluated) and its colour. 'license plate' has id -1 and never
# appears in label images.
CLASSES = (
    CityscapesClass('unlabeled', 0, 255, 'void', (0, 0, 0)),
    CityscapesClass('ego vehicle', 1, 255, 'void', (0, 0, 0)),
    CityscapesClass('rectification border', 2, 255, 'void', (0, 0, 0)),
    CityscapesClass('out of roi', 3, 255, 'void', (0, 0, 0)),
    CityscapesClass('static', 4, 255, 'void', (0, 0, 0)),
    CityscapesClass('dynamic', 5, 255, 'void', (111, 74, 0)),
    CityscapesClass('ground', 6, 255, 'void', (81, 0, 81)),
    CityscapesClass('road', 7, 0, 'flat', (128, 64, 128)),
    CityscapesClass('sidewalk', 8, 1, 'flat', (244, 35, 232)),
    CityscapesClass('parking', 9, 255, 'flat', (250, 170, 160)),
    CityscapesClass('rail track', 10, 255, 'flat', (230, 150, 140)),
    CityscapesClass('building', 11, 2, 'construction', (70, 70, 70)),
    CityscapesClass('wall', 12, 3, 'construction', (102, 102, 156)),
    CityscapesClass('fence', 13, 4, 'construction', (190, 153, 153)),
    CityscapesClass('guard rail', 14, 255, 'construction', (180, 165, 180)),
    CityscapesClass('bridge', 15, 255, 'construction', (150, 100, 100)),
    CityscapesClass('tunnel', 16, 255, 'construction', (150, 120, 90)),
    CityscapesClass('pole', 17, 5, 'object', (153, 153, 153)),
    CityscapesClass('polegroup', 18, 255, 'object', (153, 153, 153)),
    CityscapesClass('traffic light', 19, 6, 'object', (250, 170, 30)),
    CityscapesClass('traffic sign', 20, 7, 'object', (220, 220, 0)),
    CityscapesClass('vegetation', 21, 8, 'nature', (107, 142, 35)),
    CityscapesClass('terrain', 22, 9, 'nature', (152, 251, 152)),
    CityscapesClass('sky', 23, 10, 'sky', (70, 130, 180)),
    CityscapesClass('person', 24, 11, 'human', (220, 20, 60)),
    CityscapesClass('rider', 25, 12, 'human', (255, 0, 0)),
    CityscapesClass('car', 26, 13, 'vehicle', (0, 0, 142)),
    CityscapesClass('truck', 27, 14, 'vehicle', (0, 0, 70)),
    CityscapesClass('bus', 28, 15, 'vehicle', (0, 60, 100)),
    CityscapesClass('caravan', 29, 255, 'vehicle', (0, 0, 90)),
    CityscapesClass('trailer', 30, 255, 'vehicle', (0, 0, 110)),
    CityscapesClass('train', 31, 16, 'vehicle', (0, 80, 100)),
    CityscapesClass('motorcycle', 32, 17, 'vehicle', (0, 0, 230)),
    CityscapesClass('bicycle', 33, 18, 'vehicle', (119, 11, 32)),
    CityscapesClass('license plate', -1, 255, 'vehicle', (0, 0, 142)),
)

_TRAIN_CLASSES = sorted((c for c in CLASSES if c.train_id != IGNORE_LABEL),
                        key=lambda c: c.train_id)
TRAIN_CLASS_NAMES = tuple(c.name for c in _TRAIN_CLASSES)
# Train id -> raw label id, as the evaluation server wants predictions.
TRAIN_ID_TO_LABEL_ID = tuple(c.label_id for c in _TRAIN_CLASSES)


def label_id_to_train_id_table() -> np.ndarray:
  """uint8[256]: raw label id -> train id; ids not in the table -> 255."""
  table = np.full((256,), IGNORE_LABEL, np.uint8)
  for cls in CLASSES:
    if cls.label_id >= 0:
      table[cls.label_id] = cls.train_id
  return table


def map_to_train_ids(label_ids: tf.Tensor) -> tf.Tensor:
  """Maps a uint8 tensor of raw label ids to train ids (others -> 255)."""
  table = tf.constant(label_id_to_train_id_table())
  return tf.gather(table, tf.cast(label_ids, tf.int32))


def to_common_example(example: dict) -> dict:
  """A TFDS cityscapes example as {'image', 'label' (train ids), 'name'}."""
  return {
      'image': example['image_left'],
      'label': map_to_train_ids(example['segmentation_label']),
      'name': example['image_id'],
  }
