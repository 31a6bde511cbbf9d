"""Colour tables against the original's documented entries."""

import numpy as np
import pytest

from deeplab_jax import colormaps


def test_pascal_documented_entries():
  colormap = colormaps.get_colormap('pascal')
  assert colormap.shape == (256, 3) and colormap.dtype == np.uint8
  expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
              8: (64, 0, 0), 15: (192, 128, 128), 20: (0, 64, 128), 255: (224, 224, 192)}
  for index, rgb in expected.items():
    assert tuple(colormap[index]) == rgb, index
  assert len({tuple(c) for c in colormap}) == 256  # The bit interleaving is a bijection.
  np.testing.assert_array_equal(colormaps.get_colormap('pascal_voc_seg'), colormap)


def test_cityscapes_entries():
  colormap = colormaps.get_colormap('cityscapes')
  assert colormap.shape == (256, 3) and colormap.dtype == np.uint8
  assert tuple(colormap[0]) == (128, 64, 128)  # road
  assert tuple(colormap[11]) == (220, 20, 60)  # person
  assert tuple(colormap[13]) == (0, 0, 142)  # car
  assert tuple(colormap[18]) == (119, 11, 32)  # bicycle
  assert not colormap[19:].any()


def test_ade20k_table():
  colormap = colormaps.get_colormap('ade20k')
  assert colormap.shape == (151, 3) and colormap.dtype == np.uint8
  assert tuple(colormap[0]) == (0, 0, 0)
  assert tuple(colormap[1]) == (120, 120, 120)
  assert tuple(colormap[12]) == (235, 255, 7)
  assert tuple(colormap[100]) == (255, 112, 0)
  assert tuple(colormap[150]) == (92, 0, 255)
  # Column sums of the reference's table guard every other entry.
  assert colormap.astype(int).sum(axis=0).tolist() == [17965, 20212, 20250]


def test_colorize_is_a_lookup_and_rejects_labels_beyond_the_table():
  labels = np.array([[0, 1], [15, 255]], np.uint8)
  image = colormaps.colorize(labels, 'pascal')
  assert image.shape == (2, 2, 3) and image.dtype == np.uint8
  assert tuple(image[1, 0]) == (192, 128, 128) and tuple(image[1, 1]) == (224, 224, 192)
  assert tuple(colormaps.colorize(np.array([255]), 'cityscapes')[0]) == (0, 0, 0)
  with pytest.raises(ValueError, match=r"'ade20k' colormap has 151 entries"):
    colormaps.colorize(labels, 'ade20k')
  with pytest.raises(ValueError, match='colormap has 256'):
    colormaps.colorize(np.array([-1, 3]), 'pascal')
  with pytest.raises(ValueError, match='integer'):
    colormaps.colorize(np.zeros((2,), np.float32), 'pascal')
  with pytest.raises(ValueError, match="Unknown colormap 'mapillary'"):
    colormaps.get_colormap('mapillary')


def test_cityscapes_train_id_to_label_id():
  train_ids = np.array([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 255]])
  label_ids = colormaps.cityscapes_train_id_to_label_id(train_ids)
  assert label_ids.dtype == np.uint8
  np.testing.assert_array_equal(
      label_ids,
      [[7, 8, 11, 12, 13, 17, 19, 20, 21, 22], [23, 24, 25, 26, 27, 28, 31, 32, 33, 255]])
  with pytest.raises(ValueError, match=r'\[19\]'):
    colormaps.cityscapes_train_id_to_label_id(np.array([0, 19]))
