"""A user's folder of images and class-id PNGs, read in place, with clear errors."""

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deeplab_jax.data import custom

CLASSES = ('background', 'road', 'tree')


def image_pixels(seed, height, width):
  pixels = np.zeros((height, width, 3), np.uint8)
  pixels[..., 0] = 30 * seed + 20
  pixels[..., 1] = np.arange(width, dtype=np.uint8)[None, :] * 3
  pixels[..., 2] = np.arange(height, dtype=np.uint8)[:, None] * 5
  return pixels


def label_ids(seed, height, width):
  ids = np.full((height, width), (seed % 2) + 1, np.uint8)
  ids[: height // 3] = 0
  ids[-1] = 255  # Ignore.
  return ids


def write_image(path, pixels):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(pixels).save(path)


def write_label(path, ids, mode='L'):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = Image.fromarray(ids, mode='L')
  if mode == 'P':
    image = Image.fromarray(ids, mode='P')
    image.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
  image.save(path)


# name -> (split, extension, height, width, label mode)
FILES = {
    'street_01': ('train', '.png', 12, 16, 'L'),
    'street_02': ('train', '.png', 9, 20, 'P'),
    'street_03': ('train', '.PNG', 10, 10, 'L'),
    'park_01': ('val', '.png', 11, 13, 'P'),
}


def write_folder(root, files=FILES, classes=CLASSES):
  for seed, (name, (split, ext, height, width, mode)) in enumerate(
      sorted(files.items())):
    write_image(os.path.join(root, 'images', split, name + ext),
                image_pixels(seed, height, width))
    write_label(os.path.join(root, 'labels', split, name + '.png'),
                label_ids(seed, height, width), mode)
  if classes is not None:
    with open(os.path.join(root, 'classes.txt'), 'w') as f:
      f.write('\n'.join(classes) + '\n\n')
  return os.fspath(root)


def read_all(dataset):
  return {ex['name'].decode(): ex for ex in dataset.as_numpy_iterator()}


def test_reads_images_and_ids_in_place_aligned(tmp_path):
  root = write_folder(tmp_path)
  assert custom.split_names(root) == ['train', 'val']
  assert custom.read_class_names(root) == CLASSES
  pairs = custom.list_pairs(root, 'train')
  assert [p.name for p in pairs] == ['street_01', 'street_02', 'street_03']
  examples = read_all(custom.make_dataset(pairs, num_classes=3))
  for seed, (name, (_, _, height, width, _)) in enumerate(sorted(FILES.items())):
    if name not in examples:
      continue
    example = examples[name]
    assert example['image'].dtype == np.uint8
    np.testing.assert_array_equal(example['image'],
                                  image_pixels(seed, height, width))
    # Palette PNGs give their indices, not the palette colours.
    np.testing.assert_array_equal(example['label'][..., 0],
                                  label_ids(seed, height, width))
  assert len(examples) == 3


def test_jpeg_and_validation_alias(tmp_path):
  root = write_folder(tmp_path, files={
      'a': ('val', '.jpg', 8, 8, 'L'), 'b': ('val', '.jpeg', 8, 9, 'L')})
  pairs = custom.list_pairs(root, 'validation')  # Folder is 'val'.
  examples = read_all(custom.make_dataset(pairs, num_classes=3))
  assert sorted(examples) == ['a', 'b']
  assert examples['b']['image'].shape == (8, 9, 3)
  assert custom.count_images(root, 'val') == 2


def test_infer_num_classes_without_classes_txt_reads_the_labels_once(tmp_path):
  root = write_folder(tmp_path, classes=None)
  assert custom.read_class_names(root) is None
  labels = os.path.join(root, 'labels', 'train')
  inferred = custom.infer_num_classes(root, 'train', ignore_label=255)
  assert inferred == (3, (os.path.join(labels, 'street_01.png'),
                          os.path.join(labels, 'street_03.png')))
  # Garbled in place with its size and time kept: not decoded again.
  path = os.path.join(labels, 'street_02.png')
  stat = os.stat(path)
  with open(path, 'wb') as f:
    f.write(b'x' * stat.st_size)
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  assert custom.infer_num_classes(root, 'train', ignore_label=255) == inferred
  # A changed file is read again.
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  with pytest.raises(ValueError, match=r'unreadable or corrupt label .*street_02'):
    custom.infer_num_classes(root, 'train', ignore_label=255)


def test_shard_is_contiguous_and_even():
  items = list(range(7))
  shards = [custom.shard(items, i, 3) for i in range(3)]
  assert shards == [[0, 1, 2], [3, 4], [5, 6]]
  with pytest.raises(ValueError, match='process_index'):
    custom.shard(items, 3, 3)


def test_missing_label_file_is_named(tmp_path):
  root = write_folder(tmp_path)
  os.remove(os.path.join(root, 'labels', 'train', 'street_02.png'))
  with pytest.raises(FileNotFoundError,
                     match=r'missing label file .*labels/train/street_02\.png'):
    custom.list_pairs(root, 'train')


def test_size_mismatch_is_named(tmp_path):
  root = write_folder(tmp_path)
  write_label(os.path.join(root, 'labels', 'train', 'street_01.png'),
              np.zeros((5, 5), np.uint8))
  pairs = custom.list_pairs(root, 'train')
  with pytest.raises(ValueError, match=r'street_01\.png.*16x12.*5x5'):
    custom.make_dataset(pairs, num_classes=3)


def test_rgb_label_is_refused(tmp_path):
  root = write_folder(tmp_path)
  path = os.path.join(root, 'labels', 'val', 'park_01.png')
  Image.new('RGB', (13, 11), (128, 0, 0)).save(path)
  with pytest.raises(ValueError, match=r'park_01\.png is a RGB image.*class ids'):
    custom.make_dataset(custom.list_pairs(root, 'val'), num_classes=3)


def test_out_of_range_label_values_are_named_when_read(tmp_path):
  root = write_folder(tmp_path)
  ids = label_ids(0, 11, 13)
  ids[0, 0], ids[0, 1] = 7, 254
  write_label(os.path.join(root, 'labels', 'val', 'park_01.png'), ids)
  dataset = custom.make_dataset(custom.list_pairs(root, 'val'), num_classes=3)
  with pytest.raises(tf.errors.OpError,
                     match=r'park_01\.png has values \[7, 254\] >= num_classes=3'):
    read_all(dataset)
  with pytest.raises(ValueError, match=r'park_01\.png has values \[7, 254\]'):
    custom.validate_split(root, 'val', num_classes=3)
  # 255 is the ignore label, not an error.
  assert custom.validate_split(root, 'train', num_classes=3) == 3


def test_corrupt_images_are_named(tmp_path):
  root = write_folder(tmp_path)
  garbage = os.path.join(root, 'images', 'train', 'street_01.png')
  with open(garbage, 'wb') as f:
    f.write(b'this is not an image')
  with pytest.raises(ValueError, match=r'unreadable or corrupt image .*street_01'):
    custom.make_dataset(custom.list_pairs(root, 'train'), num_classes=3)

  # A truncated JPEG has a valid header: caught when its pixels are decoded.
  truncated = os.path.join(root, 'images', 'val', 'park_01.jpg')
  noise = np.random.default_rng(0).integers(0, 256, (44, 52, 3), np.uint8)
  write_image(truncated, noise)
  write_label(os.path.join(root, 'labels', 'val', 'park_01.png'),
              np.zeros((44, 52), np.uint8))
  os.remove(os.path.join(root, 'images', 'val', 'park_01.png'))
  data = open(truncated, 'rb').read()
  with open(truncated, 'wb') as f:
    f.write(data[: len(data) // 2])  # Keeps the header, cuts the scan.
  dataset = custom.make_dataset(custom.list_pairs(root, 'val'), num_classes=3)
  with pytest.raises(tf.errors.OpError,
                     match=r'unreadable or corrupt image .*park_01\.jpg'):
    read_all(dataset)


def test_empty_and_missing_splits_are_named(tmp_path):
  root = write_folder(tmp_path)
  os.makedirs(os.path.join(root, 'images', 'test'))
  with pytest.raises(ValueError, match=r"split 'test' is empty.*images/test"):
    custom.list_pairs(root, 'test')
  with pytest.raises(FileNotFoundError,
                     match=r"no split folder .*holdout.*\['test', 'train', 'val'\]"):
    custom.list_pairs(root, 'holdout')
  with pytest.raises(FileNotFoundError, match='images does not exist'):
    custom.split_names(os.fspath(tmp_path / 'nowhere'))
