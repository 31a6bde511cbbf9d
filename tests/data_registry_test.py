"""The dataset registry: facts, per-host shards and the common example form."""

import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab_jax import config_defaults as defaults
from deeplab_jax.data import cityscapes
from deeplab_jax.data import datasets
# Writers of the real on-disk layouts, shared with the builders' own tests.
import data_cityscapes_test
import data_custom_test
import data_voc_test


def dataset_config(name, data_dir, manual_dir=None, **overrides):
  config = defaults.get_config().dataset
  config.name = name
  config.data_dir = os.fspath(data_dir)
  config.manual_dir = None if manual_dir is None else os.fspath(manual_dir)
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def names_of(dataset):
  return sorted(ex['name'].decode() for ex in dataset.as_numpy_iterator())


def check_common_form(dataset):
  spec = dataset.element_spec
  assert set(spec) == {'image', 'label', 'name'}
  assert spec['image'].dtype == tf.uint8 and spec['image'].shape.rank == 3
  assert spec['image'].shape[-1] == 3
  assert spec['label'].dtype == tf.uint8 and spec['label'].shape.rank == 3
  assert spec['label'].shape[-1] == 1
  assert spec['name'].dtype == tf.string


def test_names_and_unknown_name():
  assert datasets.dataset_names() == (
      'ade20k', 'cityscapes', 'custom', 'pascal_voc', 'synthetic')
  config = dataset_config('imagenet', '/tmp')
  with pytest.raises(ValueError, match="Unknown config.dataset.name 'imagenet'"):
    datasets.get_dataset_info(config)


def test_custom_info_and_host_shards(tmp_path):
  root = data_custom_test.write_folder(tmp_path / 'mydata')
  config = dataset_config('custom', root, train_split='train', eval_split='val')
  info = datasets.get_dataset_info(config)
  assert info == datasets.DatasetInfo(
      name='custom', num_classes=3, ignore_label=255,
      class_names=data_custom_test.CLASSES, colormap='pascal',
      splits={'train': 3, 'val': 1},
      classes_from=f'{root}/classes.txt lists 3 class names')
  assert datasets.num_examples(config, 'train') == 3

  shards = [datasets.load_split(config, 'train', process_index=i,
                                process_count=2) for i in range(2)]
  for shard in shards:
    check_common_form(shard)
  first, second = (names_of(s) for s in shards)
  assert (len(first), len(second)) == (2, 1)  # As tfds.even_splits.
  assert sorted(first + second) == ['street_01', 'street_02', 'street_03']

  example = next(shards[0].as_numpy_iterator())
  np.testing.assert_array_equal(example['label'][..., 0],
                                data_custom_test.label_ids(1, 12, 16))  # street_01, seed 1.


def test_custom_without_classes_txt_counts_classes_from_labels(tmp_path):
  root = data_custom_test.write_folder(tmp_path, classes=None)
  info = datasets.get_dataset_info(dataset_config('custom', root,
                                                  train_split='train'))
  assert info.num_classes == 3
  assert info.class_names == ('class_0', 'class_1', 'class_2')
  assert info.classes_from == (
      f'the largest class id in {root}/labels/train is 2 (there is no '
      'classes.txt), in street_01.png, street_03.png')


def test_custom_needs_its_folder():
  config = defaults.get_config().dataset
  config.name = 'custom'
  with pytest.raises(ValueError, match='data_dir must be the folder'):
    datasets.get_dataset_info(config)


@pytest.fixture(scope='module')
def voc_dirs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('registry_voc')
  data_voc_test.write_voc_archives(tmp / 'manual')
  return tmp / 'data', tmp / 'manual'


def test_pascal_voc_before_and_after_preparing(voc_dirs):
  data_dir, manual_dir = voc_dirs
  config = dataset_config('pascal_voc', data_dir, manual_dir)
  info = datasets.get_dataset_info(config)
  assert (info.num_classes, info.ignore_label, info.colormap) == (
      21, 255, 'pascal')
  assert info.class_names[15] == 'person'
  # Not prepared yet: the official sizes.
  assert info.splits == {'train': 1464, 'validation': 1449, 'trainval': 2913,
                         'train_aug': 10582}

  assert datasets.num_examples(config, 'train_aug') == 6  # Prepares.
  assert datasets.get_dataset_info(config).splits == {
      'train': 3, 'validation': 2, 'trainval': 5, 'train_aug': 6}

  shards = [datasets.load_split(config, 'train_aug', process_index=i,
                                process_count=4) for i in range(4)]
  for shard in shards:
    check_common_form(shard)
  host_names = [names_of(s) for s in shards]
  assert [len(n) for n in host_names] == [2, 2, 1, 1]
  assert sorted(sum(host_names, [])) == data_voc_test.voc.train_aug_ids(
      data_voc_test.SBD_TRAIN, data_voc_test.SBD_VAL,
      data_voc_test.VOC_TRAIN, data_voc_test.VOC_VAL)

  for example in datasets.load_split(config, 'validation').as_numpy_iterator():
    name = example['name'].decode()
    np.testing.assert_array_equal(example['label'][..., 0],
                                  data_voc_test.expected_label(name))


def test_pascal_voc_errors(voc_dirs):
  data_dir, manual_dir = voc_dirs
  config = dataset_config('pascal_voc', data_dir, manual_dir, ignore_label=0)
  with pytest.raises(ValueError, match='marks void pixels with 255'):
    datasets.get_dataset_info(config)
  config = dataset_config('pascal_voc', data_dir, manual_dir)
  with pytest.raises(ValueError, match=r"no split 'test'.*train_aug"):
    datasets.load_split(config, 'test')


def test_cityscapes_gives_train_ids(tmp_path):
  data_cityscapes_test.write_cityscapes_zips(tmp_path / 'manual')
  config = dataset_config('cityscapes', tmp_path / 'data', tmp_path / 'manual',
                          train_split='train')
  info = datasets.get_dataset_info(config)
  assert (info.num_classes, info.colormap) == (19, 'cityscapes')
  assert info.class_names == cityscapes.TRAIN_CLASS_NAMES
  dataset = datasets.load_split(config, 'validation')
  check_common_form(dataset)
  (example,) = list(dataset.as_numpy_iterator())
  assert example['name'] == b'frankfurt_000000_000294'
  table = cityscapes.label_id_to_train_id_table()
  seed = 2  # Third image written (train 0, 1; val 2).
  np.testing.assert_array_equal(example['label'][..., 0],
                                table[data_cityscapes_test.raw_label(seed)])
  assert datasets.num_examples(config, 'train') == 2


def test_synthetic_is_registered_lazily(tmp_path):
  config = dataset_config('synthetic/tiny', tmp_path / 'data')
  info = datasets.get_dataset_info(config)
  assert info.num_classes == 6 and info.class_names[0] == 'background'
  assert info.splits == {'train': 32, 'validation': 8}
  shards = [datasets.load_split(config, 'validation', process_index=i,
                                process_count=3) for i in range(3)]
  for shard in shards:
    check_common_form(shard)
  host_names = [names_of(s) for s in shards]
  assert [len(n) for n in host_names] == [3, 3, 2]
  assert sorted(sum(host_names, [])) == [f'validation_{i:05d}' for i in range(8)]
  with pytest.raises(ValueError, match="no variant 'huge'"):
    datasets.get_dataset_info(dataset_config('synthetic/huge', tmp_path))
