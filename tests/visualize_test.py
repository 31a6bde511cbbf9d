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


# --- Evaluation pictures -------------------------------------------------------------

NAMES = ['background', 'aeroplane', 'bicycle', 'bird']


def find(picture, patch):
  """(row, col) of the first place `patch` occurs exactly in `picture`, or None."""
  rows, cols = picture.shape[0] - patch.shape[0] + 1, picture.shape[1] - patch.shape[1] + 1
  for r in range(rows):
    for c in np.flatnonzero(np.all(picture[r, :cols] == patch[0, 0], -1)):
      if np.array_equal(picture[r:r + patch.shape[0], c:c + patch.shape[1]], patch):
        return r, c
  return None


def swatch_found(picture, color, size):
  square = np.empty((size, size, 3), np.uint8)
  square[...] = color
  return find(picture, square) is not None


def test_titled_comparison_has_headings_the_panels_and_a_legend_of_present_classes():
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
  truth = np.zeros((40, 50), np.int32)
  truth[10:30, 10:30] = 3
  truth[0] = 255
  prediction = truth.copy()
  prediction[10:20, 10:20] = 1
  picture = visualize.titled_comparison(image, truth, prediction, 'pascal', NAMES,
                                        title='2008_000123 at step 5')
  panels = {'Image': image, 'Ground truth': visualize.overlay(image, truth, 'pascal'),
            'Prediction': visualize.overlay(image, prediction, 'pascal')}
  lefts = []
  for heading, panel in panels.items():  # Each heading above its panel, and wide enough.
    top, left = find(picture, panel)
    text = visualize.text_picture(heading)
    where = find(picture[:top], text)
    assert where is not None and top - 20 < where[0] and left <= where[1] < left + 50, heading
    lefts.append(left)
  assert lefts[1] - lefts[0] > 50 and lefts[2] - lefts[1] > 72  # "Ground truth": 72 px wide.
  assert find(picture[:top], visualize.text_picture('2008_000123 at step 5')) is not None
  panel = image
  legend = picture[top + panel.shape[0]:]
  colors = colormaps.get_colormap('pascal')
  for c in (0, 1, 3):  # Present in the ground truth or the prediction.
    assert find(legend, visualize.text_picture(f'{c} {NAMES[c]}')) is not None
    assert swatch_found(legend, colors[c], 11)
  assert find(legend, visualize.text_picture('2 bicycle')) is None
  assert not swatch_found(legend, colors[2], 11)


def test_large_panels_magnify_the_text():
  image = np.zeros((20, 700, 3), np.uint8)
  labels = np.zeros((20, 700), np.int32)
  picture = visualize.titled_comparison(image, labels, labels, 'pascal', NAMES)
  assert visualize.text_scale(2100) == 3
  assert find(picture, visualize.text_picture('Ground truth', 3)) is not None
  assert swatch_found(picture, colormaps.get_colormap('pascal')[0], 33)


def test_confusion_matrix_picture_is_normalised_per_true_class_with_names_on_both_axes():
  confusion = np.array([[10, 0, 0, 0], [5, 5, 0, 0], [0, 0, 0, 0], [1, 0, 0, 3]])
  picture = visualize.confusion_matrix_picture(confusion, NAMES)
  cell = 30
  # The first pixel of the full cell (0, 0), inside its outline, anchors the grid.
  top, left = np.argwhere(np.all(picture == visualize._cell_color(1.0), -1))[0]

  def color(true, predicted):
    return tuple(int(v) for v in picture[top + true * cell, left + predicted * cell])
  assert tuple(picture[top - 1, left]) == tuple(picture[top, left - 1]) == visualize.GREY
  assert color(0, 1) == visualize.WHITE
  assert color(1, 0) == color(1, 1) == visualize._cell_color(0.5)
  assert color(2, 2) == visualize.GREY  # Absent from the ground truth.
  assert color(3, 0) == visualize._cell_color(0.25)
  for name in NAMES:
    row_name = visualize.text_picture(f' {name} ')
    where = find(picture, row_name)
    assert where is not None and where[1] + row_name.shape[1] == left - 1  # Beside the grid.
    assert find(picture, np.rot90(row_name)) is not None  # Above its column.
  with pytest.raises(ValueError, match='class names'):
    visualize.confusion_matrix_picture(confusion, NAMES[:3])


def test_iou_chart_bars_are_proportional():
  picture = visualize.iou_chart({'background': 0.9, 'cat': 0.5, 'dog': None}, 0.7)
  for text in ('background', '0.900', 'cat', '0.500', 'n/a', 'mean IoU', '0.700'):
    assert find(picture, visualize.text_picture(text)) is not None, text
  bar_color = np.array(visualize._cell_color(0.8), np.uint8)
  rows = np.all(picture == bar_color, -1).sum(1)
  assert sorted(set(rows) - {0}) == [100, 180]  # 0.5 and 0.9 of 200 pixels.
