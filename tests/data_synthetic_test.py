"""The generated `deeplab_synthetic` dataset: determinism, alignment, difficulty."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest
import tensorflow_datasets as tfds

from deeplab_jax import config_defaults as defaults
from deeplab_jax.data import input_pipeline
from deeplab_jax.data import synthetic


@pytest.fixture(scope='module')
def train_examples():
  return [synthetic.generate_example(0, 'train', i) for i in range(80)]


def test_examples_are_a_function_of_seed_split_and_index():
  first = synthetic.generate_example(3, 'train', 7)
  again = synthetic.generate_example(3, 'train', 7)
  np.testing.assert_array_equal(first['image'], again['image'])
  np.testing.assert_array_equal(first['label'], again['label'])
  assert first['name'] == 'train_00007'
  for other in (synthetic.generate_example(4, 'train', 7),
                synthetic.generate_example(3, 'validation', 7),
                synthetic.generate_example(3, 'train', 8)):
    assert not np.array_equal(first['label'], other['label'])


def test_sizes_and_dtypes_vary_within_the_range(train_examples):
  sizes = set()
  for example in train_examples:
    height, width = example['image'].shape[:2]
    assert 128 <= height <= 160 and 128 <= width <= 160
    assert example['image'].shape == (height, width, 3)
    assert example['label'].shape == (height, width, 1)
    assert example['image'].dtype == np.uint8
    assert example['label'].dtype == np.uint8
    assert set(np.unique(example['label'])) <= set(range(synthetic.NUM_CLASSES))
    sizes.add((height, width))
  assert len(sizes) > 40


def test_labels_are_the_topmost_drawn_shape_and_carry_its_colour():
  scenes = synthetic.split_scenes(0, 'train', 30)
  for index, scene in enumerate(scenes):
    example = synthetic.generate_example(0, 'train', index)
    image = example['image'].astype(np.float32)
    expected = np.zeros((scene.height, scene.width), np.uint8)
    topmost = np.full((scene.height, scene.width), -1)
    for k, shape in enumerate(scene.shapes):
      mask = synthetic.shape_mask(shape, scene.height, scene.width)
      expected[mask] = shape.class_id
      topmost[mask] = k
    np.testing.assert_array_equal(example['label'][..., 0], expected)
    for k, shape in enumerate(scene.shapes):
      visible = topmost == k
      if visible.sum() < 20:
        continue
      # Drawn in its colour, up to shading, noise and clipping at 0 / 255.
      error = np.abs(image[visible] - np.asarray(shape.color))
      assert np.median(error) < 25, (index, k)


def test_every_shape_class_is_common(train_examples):
  scenes = synthetic.split_scenes(0, 'train', 200)
  classes = np.array([s.class_id for scene in scenes for s in scene.shapes])
  shares = np.bincount(classes, minlength=synthetic.NUM_CLASSES)[1:] / classes.size
  assert np.all(shares > 0.12) and np.all(shares < 0.28), shares
  labels = np.concatenate([e['label'].ravel() for e in train_examples])
  pixel_shares = np.bincount(labels, minlength=synthetic.NUM_CLASSES) / labels.size
  assert 0.6 < pixel_shares[0] < 0.9, pixel_shares
  assert np.all(pixel_shares[1:] > 0.015), pixel_shares
  assert len(synthetic.CLASS_NAMES) == synthetic.NUM_CLASSES == 6
  assert len(synthetic.COLORMAP) == synthetic.NUM_CLASSES


def _colour_bins(image):
  # 8 levels per channel: 512 colour bins.
  return (image.reshape(-1, 3) // 32).astype(np.int64) @ np.array([64, 8, 1])


def test_colour_alone_does_not_determine_the_class(train_examples):
  # Per-class mean colours spread over the whole colour cube, for every class.
  scenes = synthetic.split_scenes(0, 'train', 200)
  for class_id in range(1, synthetic.NUM_CLASSES):
    colours = np.array([s.color for scene in scenes for s in scene.shapes
                        if s.class_id == class_id])
    assert np.all(np.abs(colours.mean(0) - 127.5) < 25), class_id
    assert np.all(colours.std(0) > 55), class_id
  # The best colour -> class lookup learned on training pixels is near chance
  # on new images: colour carries (almost) no class information.
  counts = np.zeros((512, synthetic.NUM_CLASSES))
  for example in train_examples:
    np.add.at(counts, (_colour_bins(example['image']),
                       example['label'].ravel()), 1)
  object_lookup = counts[:, 1:].argmax(1) + 1
  correct = total = 0
  for index in range(20):
    example = synthetic.generate_example(0, 'validation', index)
    labels = example['label'].ravel()
    objects = labels > 0
    predicted = object_lookup[_colour_bins(example['image'])]
    correct += (predicted[objects] == labels[objects]).sum()
    total += objects.sum()
  assert correct / total < 0.3  # Chance is 0.2 among the five shapes.


def test_tfds_builder_generates_the_same_examples(tmp_path):
  builder = tfds.builder('deeplab_synthetic/tiny', data_dir=str(tmp_path))
  builder.download_and_prepare()
  assert builder.info.splits['train'].num_examples == 32
  assert builder.info.splits['validation'].num_examples == 8
  validation = list(builder.as_dataset(split='validation').as_numpy_iterator())
  by_name = {e['name'].decode(): e for e in validation}
  assert sorted(by_name) == [f'validation_{i:05d}' for i in range(8)]
  for index in range(8):
    expected = synthetic.generate_example(0, 'validation', index)
    stored = by_name[expected['name']]
    np.testing.assert_array_equal(stored['image'], expected['image'])  # PNG
    np.testing.assert_array_equal(stored['label'], expected['label'])
  # The dataset feeds the input pipeline as is.
  config = defaults.get_config()
  config.model.num_classes = synthetic.NUM_CLASSES
  config.global_batch_size = 4
  config.train_crop_size = (129, 129)
  batch = next(input_pipeline.create_train_dataset(
      config, builder.as_dataset(split='train')).as_numpy_iterator())
  assert batch['image'].shape == (4, 129, 129, 3)
  assert set(np.unique(batch['label'])) <= set(range(6)) | {255}


def test_custom_config_sizes_and_bad_sizes(tmp_path):
  config = synthetic.DeeplabSyntheticConfig(
      name='custom', seed=5, num_train=3, num_validation=2, min_size=40,
      max_size=48)
  builder = synthetic.DeeplabSynthetic(config=config, data_dir=str(tmp_path))
  builder.download_and_prepare()
  train = list(builder.as_dataset(split='train').as_numpy_iterator())
  assert len(train) == 3
  for example in train:
    assert 40 <= example['image'].shape[0] <= 48
  bad = synthetic.DeeplabSyntheticConfig(name='bad', min_size=50, max_size=40)
  with pytest.raises(ValueError, match='min_size'):
    synthetic.DeeplabSynthetic(
        config=bad, data_dir=str(tmp_path / 'bad')).download_and_prepare()

