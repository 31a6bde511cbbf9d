"""Label PNGs, overlays and panels, checked by reading the files back."""

import numpy as np
import pytest
from PIL import Image

from deeplab_jax import colormaps, visualize


def test_label_png_is_a_palette_image_of_class_ids(tmp_path):
  labels = np.arange(256, dtype=np.int32).reshape(16, 16)  # Every id survives the round trip.
  path = tmp_path / 'out' / '000001_prediction.png'
  visualize.save_label_png(str(path), labels, 'pascal')
  with Image.open(path) as picture:
    assert picture.format == 'PNG' and picture.mode == 'P'
    np.testing.assert_array_equal(np.array(picture), labels)
    palette = np.array(picture.getpalette(), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette[:256], colormaps.get_colormap('pascal'))
    rgb = np.array(picture.convert('RGB'))
  np.testing.assert_array_equal(rgb, colormaps.colorize(labels, 'pascal'))
  np.testing.assert_array_equal(visualize.read_label_png(str(path)), labels)


def test_ade20k_label_png_and_range_error(tmp_path):
  labels = np.array([[0, 150], [7, 1]], np.uint8)[..., None]
  path = str(tmp_path / 'ade.png')
  visualize.save_label_png(path, labels, 'ade20k')
  with Image.open(path) as picture:
    assert tuple(picture.convert('RGB').getpixel((1, 0))) == (92, 0, 255)
  np.testing.assert_array_equal(visualize.read_label_png(path), labels[..., 0])
  with pytest.raises(ValueError, match=r"bad\.png.*151 entries"):
    visualize.save_label_png(str(tmp_path / 'bad.png'), np.array([[255]]), 'ade20k')


def test_read_label_png_rejects_rgb(tmp_path):
  path = str(tmp_path / 'rgb.png')
  Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(path)
  with pytest.raises(ValueError, match=r"rgb\.png is a 'RGB' image"):
    visualize.read_label_png(path)


def test_overlay_blends_and_leaves_ignored_pixels():
  image = np.full((2, 2, 3), 100, np.uint8)
  labels = np.array([[1, 255], [15, 0]])
  blended = visualize.overlay(image, labels, 'pascal', alpha=0.5)
  assert blended.dtype == np.uint8 and blended.shape == (2, 2, 3)
  assert tuple(blended[0, 0]) == (114, 50, 50)  # (100 + 128) / 2, (100 + 0) / 2
  assert tuple(blended[0, 1]) == (100, 100, 100)  # ignored
  assert tuple(blended[1, 0]) == (146, 114, 114)
  np.testing.assert_array_equal(visualize.overlay(image, labels, 'pascal', alpha=0.0), image)
  # ADE20K has no entry 255, but ignored pixels are never looked up.
  visualize.overlay(image, labels, 'ade20k')
  gray = visualize.overlay(np.full((2, 2), 100, np.uint8), labels, 'pascal')
  np.testing.assert_array_equal(gray, blended)
  with pytest.raises(ValueError, match='differ in size'):
    visualize.overlay(image, np.zeros((3, 2), np.int32), 'pascal')
  with pytest.raises(ValueError, match='uint8'):
    visualize.overlay(image.astype(np.float32), labels, 'pascal')


def test_comparison_panel_side_by_side(tmp_path):
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
  truth = rng.integers(0, 21, size=(5, 4))
  truth[0] = 255
  prediction = rng.integers(0, 21, size=(5, 4))
  panel = visualize.comparison_panel(image, truth, prediction, 'pascal')
  assert panel.shape == (5, 12, 3) and panel.dtype == np.uint8
  np.testing.assert_array_equal(panel[:, :4], image)
  np.testing.assert_array_equal(panel[:, 4:8], visualize.overlay(image, truth, 'pascal'))
  np.testing.assert_array_equal(panel[:, 8:], visualize.overlay(image, prediction, 'pascal'))
  path = tmp_path / 'panel.png'
  Image.fromarray(panel).save(path)
  with Image.open(path) as picture:
    np.testing.assert_array_equal(np.array(picture), panel)
