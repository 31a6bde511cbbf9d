"""Cityscapes through TFDS from mini zips in the real layout, mapped to train ids."""

import io
import json
import os
import pathlib
import zipfile

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_jax import config_defaults as defaults
from deeplab_jax.data import check
from deeplab_jax.data import cityscapes

HEIGHT, WIDTH = 1024, 2048  # TFDS fixes the Cityscapes image shape.
# split -> [(city, image id)], with two cities in train.
IMAGES = {
    'train': [('aachen', 'aachen_000000_000019'),
              ('bochum', 'bochum_000000_000313')],
    'val': [('frankfurt', 'frankfurt_000000_000294')],
    'test': [('berlin', 'berlin_000000_000019')],
}


def raw_label(seed):
  """Vertical stripes that use every raw id 0..33, shifted per image."""
  columns = (np.arange(WIDTH) // 60 + seed) % 34
  return np.tile(columns.astype(np.uint8), (HEIGHT, 1))


def withheld_label():
  """A test-split label: the public archive has only void ids there."""
  ids = np.zeros((HEIGHT, WIDTH), np.uint8)  # 'unlabeled'.
  ids[-100:] = 1  # 'ego vehicle'.
  return ids


def left_image(seed):
  image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
  image[..., 0] = 40 * seed + 30
  image[..., 1] = (np.arange(WIDTH) // 8 % 256).astype(np.uint8)
  return image


def _png(array, mode):
  buffer = io.BytesIO()
  Image.fromarray(array, mode=mode).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


def write_cityscapes_zips(manual_dir):
  os.makedirs(manual_dir, exist_ok=True)
  left_path, gt_path = (os.path.join(manual_dir, name)
                        for name in cityscapes.ARCHIVES)
  seed = 0
  with zipfile.ZipFile(left_path, 'w') as left, \
       zipfile.ZipFile(gt_path, 'w') as gt:
    for archive in (left, gt):
      archive.writestr('README', 'Cityscapes mini fixture')
      archive.writestr('license.txt', 'test data')
    for split, images in IMAGES.items():
      for city, image_id in images:
        left.writestr(f'leftImg8bit/{split}/{city}/{image_id}_leftImg8bit.png',
                      _png(left_image(seed), 'RGB'))
        prefix = f'gtFine/{split}/{city}/{image_id}_gtFine_'
        gt.writestr(prefix + 'labelIds.png', _png(
            withheld_label() if split == 'test' else raw_label(seed), 'L'))
        gt.writestr(prefix + 'polygons.json', json.dumps(
            {'imgHeight': HEIGHT, 'imgWidth': WIDTH, 'objects': []}))
        seed += 1


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('cityscapes')
  write_cityscapes_zips(tmp / 'manual')
  builder = tfds.builder(cityscapes.TFDS_NAME, data_dir=os.fspath(tmp / 'data'))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(tmp / 'manual')))
  return builder


def test_class_table_matches_the_official_train_ids():
  assert len(cityscapes.TRAIN_CLASS_NAMES) == 19
  assert cityscapes.TRAIN_CLASS_NAMES[:3] == ('road', 'sidewalk', 'building')
  assert cityscapes.TRAIN_CLASS_NAMES[-1] == 'bicycle'
  assert cityscapes.TRAIN_ID_TO_LABEL_ID == (
      7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
  table = cityscapes.label_id_to_train_id_table()
  assert table.shape == (256,) and table.dtype == np.uint8
  for train_id, label_id in enumerate(cityscapes.TRAIN_ID_TO_LABEL_ID):
    assert table[label_id] == train_id
  evaluated = set(cityscapes.TRAIN_ID_TO_LABEL_ID)
  assert all(table[i] == 255 for i in range(256) if i not in evaluated)


def test_split_counts(prepared):
  assert {k: v.num_examples for k, v in prepared.info.splits.items()} == {
      'train': 2, 'validation': 1, 'test': 1}


def test_labels_are_mapped_to_train_ids(prepared):
  table = cityscapes.label_id_to_train_id_table()
  dataset = prepared.as_dataset(split='train').map(
      cityscapes.to_common_example)
  names = []
  for example in tfds.as_numpy(dataset):
    name = example['name'].decode()
    names.append(name)
    seed = [i for _, i in IMAGES['train']].index(name)
    assert example['image'].shape == (HEIGHT, WIDTH, 3)
    assert example['label'].shape == (HEIGHT, WIDTH, 1)
    assert example['label'].dtype == np.uint8
    np.testing.assert_array_equal(example['image'], left_image(seed))
    raw = raw_label(seed)
    np.testing.assert_array_equal(example['label'][..., 0], table[raw])
    # Spot checks against the official table: road 7 -> 0, bicycle 33 -> 18,
    # parking 9 -> 255, unlabeled 0 -> 255.
    label = example['label'][..., 0]
    for label_id, train_id in ((7, 0), (33, 18), (9, 255), (0, 255), (26, 13)):
      assert (label[raw == label_id] == train_id).all()
  assert sorted(names) == sorted(i for _, i in IMAGES['train'])


def test_map_to_train_ids_sends_unknown_ids_to_ignore():
  raw = tf.constant([[0, 7, 8, 33, 34, 200, 255]], tf.uint8)
  mapped = cityscapes.map_to_train_ids(raw).numpy()
  assert mapped.dtype == np.uint8
  assert mapped.tolist() == [[255, 0, 1, 18, 255, 255, 255]]


def test_check_data_notes_the_test_split_has_no_labels(prepared):
  config = defaults.get_config().dataset
  config.name = 'cityscapes'
  config.data_dir = os.fspath(pathlib.Path(prepared.data_dir).parents[2])
  report = check.check_dataset(config, splits=['test'])
  assert report.ok and not report.problems, report.format()
  assert report.splits['test'].num_read == 1
  assert any(note.startswith("Split 'test' has no labels: every pixel of its 1 "
                             'label is the ignore label 255') for note in report.notes)
