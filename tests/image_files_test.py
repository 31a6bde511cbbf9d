"""Image files read upright and as 8-bit RGB, the same way by every reader."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from deeplab_jax import image_files
from deeplab_jax.data import check
from deeplab_jax.data import custom
import data_check_test

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def upright_picture(height=24, width=36):
  """Four flat quadrants of different colours: any turn or flip shows."""
  pixels = np.zeros((height, width, 3), np.uint8)
  pixels[: height // 2, : width // 2] = (220, 30, 30)
  pixels[: height // 2, width // 2:] = (30, 220, 30)
  pixels[height // 2:, : width // 2] = (30, 30, 220)
  pixels[height // 2:, width // 2:] = (230, 230, 40)
  return pixels


def upright_label(height=24, width=36):
  ids = np.zeros((height, width), np.uint8)
  ids[: height // 2, width // 2:] = 1
  ids[height // 2:, : width // 2] = 2
  return ids


def exif(orientation):
  tags = Image.Exif()
  tags[image_files.ORIENTATION_TAG] = orientation
  return tags.tobytes()


# How a camera stores an upright picture under each orientation tag: the
# inverse of what the tag tells a viewer to do.
STORED = {6: lambda a: np.rot90(a, 1), 8: lambda a: np.rot90(a, -1)}


def save_turned(path, upright, orientation, **options):
  """Saves `upright` as a camera would: pixels turned, with the EXIF tag."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  stored = np.ascontiguousarray(STORED[orientation](upright))
  Image.fromarray(stored).save(path, exif=exif(orientation), **options)


def assert_close_picture(actual, expected):
  assert actual.shape == expected.shape
  assert np.abs(actual.astype(int) - expected).mean() < 6  # JPEG's loss.


@pytest.mark.parametrize('orientation', [6, 8])
def test_exif_rotated_jpeg_is_read_upright(tmp_path, orientation):
  path = os.fspath(tmp_path / 'phone.jpg')
  save_turned(path, upright_picture(), orientation, quality=95)
  with Image.open(path) as stored:
    assert stored.size == (24, 36)  # Stored sideways.
  header = image_files.read_header(path)
  assert (header.width, header.height, header.orientation) == (36, 24, orientation)
  decoded = image_files.read_image(path)
  assert decoded.orientation == orientation
  assert_close_picture(decoded.pixels, upright_picture())
  assert_close_picture(image_files.read_rgb(path), upright_picture())


def test_16_bit_grey_keeps_its_gradient(tmp_path):
  gradient = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
  path = os.fspath(tmp_path / 'scan.png')
  Image.fromarray(gradient).save(path)
  with Image.open(path) as stored:
    assert stored.mode == 'I;16'
    # What convert('RGB') did: everything above 255 becomes 255.
    assert len(np.unique(np.asarray(stored.convert('RGB')))) <= 2
  pixels = image_files.read_rgb(path)
  assert pixels.shape == (8, 64, 3) and pixels.dtype == np.uint8
  np.testing.assert_array_equal(
      pixels[..., 0], np.round(gradient / 257).astype(np.uint8))
  assert len(np.unique(pixels)) == 64 and pixels[0, -1, 0] == 255
  assert image_files.read_image(path).mode == 'I;16'


def test_other_modes_become_rgb(tmp_path):
  grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
  rgb = upright_picture(6, 8)
  cases = {
      'palette.png': (Image.fromarray(rgb).convert('P'), None),
      'grey_alpha.png': (Image.fromarray(grey).convert('LA'),
                         np.repeat(grey[..., None], 3, axis=2)),
      'rgba.png': (Image.fromarray(rgb).convert('RGBA'), rgb),
      'cmyk.tif': (Image.fromarray(rgb).convert('CMYK'), None),
      'bits.png': (Image.fromarray(grey > 100), None),
      'float.tif': (Image.fromarray(grey.astype(np.float32) / 255),
                    np.repeat(grey[..., None], 3, axis=2)),
  }
  for name, (image, expected) in cases.items():
    path = os.fspath(tmp_path / name)
    image.save(path)
    pixels = image_files.read_rgb(path)
    assert pixels.shape == (6, 8, 3) and pixels.dtype == np.uint8, name
    if expected is not None:
      np.testing.assert_array_equal(pixels, expected, err_msg=name)
  np.testing.assert_array_equal(image_files.read_rgb(tmp_path / 'bits.png')[..., 0],
                                np.where(grey > 100, 255, 0))


def test_unreadable_files_are_refused_by_name(tmp_path):
  garbage = tmp_path / 'notes.png'
  garbage.write_bytes(b'not an image')
  with pytest.raises(image_files.UnreadableImageError,
                     match=r'notes\.png: cannot read this file as an image'):
    image_files.read_rgb(os.fspath(garbage))
  with pytest.raises(ValueError, match=r'notes\.png: cannot read'):
    image_files.read_header(os.fspath(garbage))
  hot = tmp_path / 'hdr.tif'
  Image.fromarray(np.full((4, 4), 900.0, np.float32)).save(hot)
  with pytest.raises(ValueError, match=r'hdr\.tif: .*mode F pixels in 900.0\.\.900\.0'):
    image_files.read_rgb(os.fspath(hot))


def test_importable_without_tensorflow():
  code = ('import sys; import deeplab_jax.image_files; '
          'assert "tensorflow" not in sys.modules, "tensorflow imported"')
  subprocess.run([sys.executable, '-c', code], cwd=REPO, check=True)


def write_turned_folder(root):
  """Training pairs as phones and annotation tools leave them."""
  images = os.path.join(root, 'images', 'train')
  labels = os.path.join(root, 'labels', 'train')
  # A sideways-stored photo; its label drawn on the upright picture.
  save_turned(os.path.join(images, 'phone.jpg'), upright_picture(), 6,
              quality=95)
  data_check_test.write_label(os.path.join(labels, 'phone.png'),
                              upright_label())
  # Image and label both stored turned, each with the tag.
  save_turned(os.path.join(images, 'both.png'), upright_picture(), 8)
  save_turned(os.path.join(labels, 'both.png'), upright_label(), 8)
  # A 16-bit grey scan.
  gradient = np.tile(np.linspace(0, 65535, 36).astype(np.uint16), (24, 1))
  Image.fromarray(gradient).save(os.path.join(images, 'scan.png'))
  data_check_test.write_label(os.path.join(labels, 'scan.png'),
                              upright_label())
  return root


def test_training_reads_turned_pairs_aligned_and_16_bit_graded(tmp_path):
  root = write_turned_folder(os.fspath(tmp_path))
  pairs = custom.list_pairs(root, 'train')
  examples = {ex['name'].decode(): ex for ex in
              custom.make_dataset(pairs, num_classes=3).as_numpy_iterator()}
  for name in ('phone', 'both'):
    assert_close_picture(examples[name]['image'], upright_picture())
    np.testing.assert_array_equal(examples[name]['label'][..., 0],
                                  upright_label())
  scan = examples['scan']['image']
  assert len(np.unique(scan)) == 36 and scan.max() == 255

  report = check.check_dataset(data_check_test.custom_dataset_config(root),
                               splits=['train'])
  assert report.ok and not report.problems_of('size_mismatch'), report.format()
  notes = '\n'.join(report.notes)
  assert ('EXIF rotation applied to 2 images (read upright, as viewers show '
          'them; labels must match that) (e.g. images/train/both.png, '
          'images/train/phone.jpg).') in notes
  assert 'EXIF rotation applied to 1 label, as to images' in notes
  assert ('16-bit values scaled by the bit depth to 0..255 in 1 image (e.g. '
          'images/train/scan.png).') in notes


def test_label_drawn_on_the_stored_pixels_is_named(tmp_path):
  root = os.fspath(tmp_path)
  save_turned(os.path.join(root, 'images', 'train', 'phone.jpg'),
              upright_picture(), 6, quality=95)
  data_check_test.write_label(os.path.join(root, 'labels', 'train', 'phone.png'),
                              np.rot90(upright_label(), 1).copy())
  with pytest.raises(ValueError, match=r'phone\.jpg is 36x24 \(WxH\) but its '
                     r'label .*phone\.png is 24x36'):
    custom.make_dataset(custom.list_pairs(root, 'train'), num_classes=3)
  report = check.check_dataset(data_check_test.custom_dataset_config(root),
                               splits=['train'])
  (problem,) = report.problems_of('size_mismatch')
  assert 'carries an EXIF rotation' in problem.message
