"""ADE20K SceneParsing builder, prepared from a mini ADEChallengeData2016.zip."""

import io
import os
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import deeplab_jax
import config_files
from deeplab_jax import config_defaults as defaults
from deeplab_jax.data import ade20k
from deeplab_jax.data import archives
from deeplab_jax.data import datasets
from deeplab_jax.data import preprocessing

ade20k_mnv2 = config_files.module('ade20k_mnv2')

# split folder -> image names, as in the official archive.
NAMES = {
    'training': ['ADE_train_00000001', 'ADE_train_00000002',
                 'ADE_train_00000003'],
    'validation': ['ADE_val_00000001', 'ADE_val_00000002'],
}
GREY_IMAGE = 'ADE_train_00000002'  # A greyscale JPEG, as a few real ones are.


def image_size(index):
  return 20 + 3 * index, 30 + 2 * index  # (height, width), unique per image.


def image_colour(index):
  return (25 * index + 20, 190 - 20 * index, 50 + 15 * index)


def annotation(index):
  """Class ids with 0 ("other", ignored) on top and ids up to 150."""
  height, width = image_size(index)
  ids = np.full((height, width), 1 + (37 * index) % 150, np.uint8)
  ids[: height // 4] = 0
  ids[-1, :] = 150
  return ids


def _jpeg(pixels):
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


def _png(ids, mode='L'):
  buffer = io.BytesIO()
  Image.fromarray(ids, mode=mode).save(buffer, format='PNG')
  return buffer.getvalue()


def all_names():
  return [name for folder in ('training', 'validation')
          for name in NAMES[folder]]


def expected_image(name):
  index = all_names().index(name)
  height, width = image_size(index)
  pixels = np.tile(np.array(image_colour(index), np.uint8), (height, width, 1))
  if name == GREY_IMAGE:
    pixels = np.repeat(pixels[..., :1], 3, axis=2)
  return pixels


def write_ade20k_zip(manual_dir, annotation_overrides=None):
  """Writes a mini ADEChallengeData2016.zip in the official layout."""
  os.makedirs(manual_dir, exist_ok=True)
  annotation_overrides = annotation_overrides or {}
  path = os.path.join(manual_dir, ade20k.ARCHIVE)
  with zipfile.ZipFile(path, 'w') as archive:
    root = ade20k.ROOT + '/'
    archive.writestr(root, '')
    archive.writestr(root + 'objectInfo150.txt', 'Idx\tRatio\tTrain\tVal\tName\n')
    archive.writestr(root + 'sceneCategories.txt', '')
    for folder, names in NAMES.items():
      for name in names:
        index = all_names().index(name)
        pixels = expected_image(name)
        if name == GREY_IMAGE:
          pixels = pixels[..., 0]  # Saved as a one-channel JPEG.
        archive.writestr(f'{root}images/{folder}/{name}.jpg', _jpeg(pixels))
        label = annotation_overrides.get(name)
        if label is None:
          label = _png(annotation(index))
        archive.writestr(f'{root}annotations/{folder}/{name}.png', label)
  return path


def examples(builder, split):
  return {ex['name'].decode(): ex
          for ex in tfds.as_numpy(builder.as_dataset(split=split))}


def prepare(data_dir, manual_dir):
  builder = ade20k.Ade20kSceneParsing(data_dir=os.fspath(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual_dir)))
  return builder


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('ade20k')
  write_ade20k_zip(tmp / 'manual')
  return prepare(tmp / 'data', tmp / 'manual')


def test_class_table():
  assert ade20k.NUM_CLASSES == 151 and len(set(ade20k.CLASS_NAMES)) == 151
  assert ade20k.CLASS_NAMES[0] == 'other'
  assert (ade20k.CLASS_NAMES[1], ade20k.CLASS_NAMES[13],
          ade20k.CLASS_NAMES[150]) == ('wall', 'person', 'flag')


def test_splits_and_names(prepared):
  splits = prepared.info.splits
  assert {name: splits[name].num_examples for name in splits} == {
      'train': 3, 'validation': 2}
  assert sorted(examples(prepared, 'train')) == NAMES['training']
  assert sorted(examples(prepared, 'validation')) == NAMES['validation']


@pytest.mark.parametrize('split', ['train', 'validation'])
def test_labels_are_the_annotation_ids_aligned_with_images(prepared, split):
  for name, example in examples(prepared, split).items():
    index = all_names().index(name)
    image, label = example['image'], example['label']
    assert image.dtype == np.uint8 and image.shape == (*image_size(index), 3)
    assert label.dtype == np.uint8 and label.shape == (*image_size(index), 1)
    # Solid colour per name: the image is the one named, not a neighbour's.
    np.testing.assert_allclose(image.reshape(-1, 3).mean(0),
                               expected_image(name)[0, 0], atol=3)
    np.testing.assert_array_equal(label[..., 0], annotation(index))


def test_greyscale_jpeg_becomes_three_equal_channels(prepared):
  image = examples(prepared, 'train')[GREY_IMAGE]['image']
  assert image.shape[2] == 3
  np.testing.assert_array_equal(image[..., 0], image[..., 1])
  np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_registry_facts_and_common_form(prepared):
  config = defaults.get_config().dataset
  config.name = 'ade20k'
  config.ignore_label = 0
  config.train_split = 'train'
  config.data_dir = os.fspath(prepared.data_dir_root)
  info = datasets.get_dataset_info(config)
  assert (info.num_classes, info.ignore_label, info.colormap) == (
      151, 0, 'ade20k')
  assert info.class_names == ade20k.CLASS_NAMES
  assert info.splits == {'train': 3, 'validation': 2}  # Prepared already.
  assert 'ade20k' in datasets.dataset_names()
  shards = [datasets.load_split(config, 'train', process_index=i,
                                process_count=2) for i in range(2)]
  names = [sorted(ex['name'].decode() for ex in s.as_numpy_iterator())
           for s in shards]
  assert [len(n) for n in names] == [2, 1]
  assert sorted(sum(names, [])) == NAMES['training']
  spec = shards[0].element_spec
  assert spec['label'].shape.as_list() == [None, None, 1]

  config.ignore_label = 255  # The defaults' value: must be refused.
  with pytest.raises(ValueError, match='ade20k marks void pixels with 0'):
    datasets.get_dataset_info(config)


def test_check_num_classes(prepared):
  config = defaults.get_config()
  config.dataset.name = 'ade20k'
  config.dataset.ignore_label = 0
  config.dataset.data_dir = os.fspath(prepared.data_dir_root)
  config.model.num_classes = 151
  assert datasets.check_num_classes(config).num_classes == 151
  config.model.num_classes = 150
  with pytest.raises(ValueError, match=r'num_classes is 150, but ade20k has 151'
                     r'.*--config.model.num_classes=151'):
    datasets.check_num_classes(config)


def test_extracted_folder_in_the_manual_dir_is_used_in_place(tmp_path):
  archive = write_ade20k_zip(tmp_path / 'archive')
  archives.safe_extract(archive, tmp_path / 'manual')
  builder = prepare(tmp_path / 'data', tmp_path / 'manual')
  assert builder.info.splits['validation'].num_examples == 2
  extracted = tmp_path / 'data' / 'downloads' / 'extracted'
  assert not (extracted / (ade20k.ARCHIVE + '.dir')).exists()


def test_out_of_range_annotation_is_named(tmp_path):
  ids = annotation(3)
  ids[0, 0] = 151
  write_ade20k_zip(tmp_path / 'manual',
                   {'ADE_val_00000001': _png(ids)})
  with pytest.raises(ValueError,
                     match=r'ADE_val_00000001\.png: annotation has class id 151'):
    prepare(tmp_path / 'data', tmp_path / 'manual')


def test_colour_annotation_is_refused(tmp_path):
  rgb = np.zeros((*image_size(0), 3), np.uint8)
  write_ade20k_zip(tmp_path / 'manual', {'ADE_train_00000001': _png(rgb, 'RGB')})
  with pytest.raises(ValueError,
                     match=r'ADE_train_00000001\.png: annotation has mode RGB'):
    prepare(tmp_path / 'data', tmp_path / 'manual')


def test_archive_without_the_official_folder_is_named(tmp_path):
  (tmp_path / 'manual').mkdir()
  with zipfile.ZipFile(tmp_path / 'manual' / ade20k.ARCHIVE, 'w') as archive:
    archive.writestr('SomethingElse/readme.txt', 'not ADE20K')
  with pytest.raises(FileNotFoundError,
                     match=rf'{ade20k.ARCHIVE} does not contain {ade20k.ROOT}/'):
    prepare(tmp_path / 'data', tmp_path / 'manual')


def test_missing_archive_without_network_says_where_to_put_it(
    tmp_path, monkeypatch):
  # A closed local port stands in for "no network".
  monkeypatch.setattr(ade20k, 'URL', 'http://127.0.0.1:9/' + ade20k.ARCHIVE)
  (tmp_path / 'manual').mkdir()
  (tmp_path / 'manual' / 'unrelated.txt').write_text('x')
  with pytest.raises(FileNotFoundError) as error:
    prepare(tmp_path / 'data', tmp_path / 'manual')
  message = str(error.value)
  assert ade20k.ARCHIVE in message
  assert os.fspath(tmp_path / 'manual') in message
  assert 'cannot be reached' in message


def test_ade20k_mnv2_config_builds_the_zoo_model_and_fits_eval_images():
  for arg in (None, 'tiny'):
    config = ade20k_mnv2.get_config(arg)
    dataset = config.dataset
    assert (dataset.name, dataset.ignore_label, config.model.num_classes) == (
        'ade20k', 0, 151)
    assert dataset.min_resize_value == dataset.max_resize_value
    assert dataset.resize_factor == config.model.output_stride == 16
    # Any image, resized as the pipeline does, fits the evaluation crop.
    for height, width in ((512, 683), (1000, 200), (96, 128)):
      size = preprocessing.resize_to_range_size(
          height, width, min_size=dataset.min_resize_value,
          max_size=dataset.max_resize_value, factor=dataset.resize_factor)
      assert all(int(s) <= c for s, c in zip(size, config.eval_crop_size))
      assert all(int(s) % 16 == 1 for s in size)
  config = ade20k_mnv2.get_config()
  assert config.train_crop_size == config.eval_crop_size == (257, 257)
  model = deeplab_jax.create_model(config)
  images = jnp.zeros((1, 257, 257, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
  assert 'decoder' in variables['params']
  logits = jax.eval_shape(lambda v: model.apply(v, images), variables)
  assert logits.shape == (1, 65, 65, 151)  # Decoder at output stride 4.
