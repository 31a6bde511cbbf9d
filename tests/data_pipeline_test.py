"""Training and evaluation input pipelines: batching, resumption, host padding."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest
import tensorflow as tf

from deeplab_jax import config_defaults as defaults
from deeplab_jax.data import input_pipeline

_SIGNATURE = {
    'image': tf.TensorSpec([None, None, 3], tf.uint8),
    'label': tf.TensorSpec([None, None, 1], tf.uint8),
    'name': tf.TensorSpec([], tf.string),
}


def _examples(num, *, min_size=20, max_size=40, seed=0):
  """Examples of varied sizes whose image value (channel 0) is their id."""
  rng = np.random.default_rng(seed)
  examples = []
  for i in range(num):
    height, width = rng.integers(min_size, max_size + 1, 2)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    image[..., 0] = i
    label = rng.integers(0, 5, (height, width, 1), dtype=np.uint8)
    examples.append({'image': image, 'label': label, 'name': f'img_{i:03d}'})
  return examples


def _source(examples):
  """A generator dataset, like a TFDS split whose size tf.data cannot tell."""
  return tf.data.Dataset.from_generator(lambda: iter(examples),
                                        output_signature=_SIGNATURE)


def _config(**overrides):
  config = defaults.get_config()
  config.global_batch_size = 4
  config.train_crop_size = (17, 17)
  config.eval_crop_size = (41, 41)
  config.eval_batch_size = 4
  config.shuffle_buffer_size = 8
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def _take(dataset, num):
  return [batch for batch, _ in zip(dataset.as_numpy_iterator(), range(num))]


def test_train_batches_have_the_documented_shapes():
  batches = _take(input_pipeline.create_train_dataset(
      _config(global_batch_size=6), _source(_examples(5)), process_count=2), 3)
  for batch in batches:
    assert set(batch) == {'image', 'label'}
    assert batch['image'].shape == (3, 17, 17, 3)
    # uint8 to the devices: a quarter of float32's bytes.
    assert batch['image'].dtype == np.uint8
    assert batch['label'].shape == (3, 17, 17)
    assert batch['label'].dtype == np.uint8
    assert 0 <= batch['image'].min() and batch['image'].max() <= 255
    assert set(np.unique(batch['label'])) <= {0, 1, 2, 3, 4, 255}


def test_batch_not_divisible_by_processes_is_a_clear_error():
  with pytest.raises(ValueError, match='global_batch_size=6.*4'):
    input_pipeline.create_train_dataset(
        _config(global_batch_size=6), _source(_examples(5)), process_count=4)


def test_resumed_run_yields_the_uninterrupted_batches():
  examples = _examples(10)
  config = _config()
  full = _take(input_pipeline.create_train_dataset(config, _source(examples)),
               9)
  # Step 3 starts at example 12: epoch 1, two examples in. Step 5 starts at an
  # epoch boundary (example 20).
  for start_step in (3, 5, 8):
    resumed = _take(input_pipeline.create_train_dataset(
        config, _source(examples), start_step=start_step),
                    9 - start_step)
    for expected, actual in zip(full[start_step:], resumed):
      np.testing.assert_array_equal(expected['image'], actual['image'])
      np.testing.assert_array_equal(expected['label'], actual['label'])


def test_every_epoch_is_a_new_permutation_of_the_shard():
  examples = _examples(10, min_size=20)  # >= the crop at scale 1: no padding.
  config = _config(min_scale_factor=1.0, max_scale_factor=1.0,
                   global_batch_size=5)
  batches = _take(input_pipeline.create_train_dataset(config,
                                                      _source(examples)), 6)
  ids = np.concatenate([b['image'][:, 0, 0, 0] for b in batches]).astype(int)
  epochs = ids.reshape(3, 10)
  for epoch in epochs:
    assert sorted(epoch) == list(range(10))
  assert len({tuple(epoch) for epoch in epochs}) == 3
  assert tuple(epochs[0]) != tuple(range(10))


def test_order_is_deterministic_and_ignores_the_global_tf_seed():
  examples = _examples(10)
  config = _config()
  first = _take(input_pipeline.create_train_dataset(config, _source(examples)),
                4)
  tf.random.set_seed(1234)
  second = _take(input_pipeline.create_train_dataset(config, _source(examples)),
                 4)
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a['image'], b['image'])
  other_seed = _take(input_pipeline.create_train_dataset(
      _config(seed=1), _source(examples)), 1)
  assert not np.array_equal(first[0]['image'], other_seed[0]['image'])


def test_hosts_get_different_augmentations_of_the_same_examples():
  examples = _examples(4)
  config = _config(global_batch_size=8)
  host0 = _take(input_pipeline.create_train_dataset(
      config, _source(examples), process_index=0, process_count=2), 1)[0]
  host1 = _take(input_pipeline.create_train_dataset(
      config, _source(examples), process_index=1, process_count=2), 1)[0]
  assert not np.array_equal(host0['image'], host1['image'])


def test_known_size_source_and_explicit_size_agree():
  examples = [dict(e) for e in _examples(6, min_size=25, max_size=25)]
  stacked = {key: np.stack([e[key] for e in examples]) for key in _SIGNATURE}
  tensor_source = tf.data.Dataset.from_tensor_slices(stacked)
  config = _config()
  from_slices = _take(input_pipeline.create_train_dataset(
      config, tensor_source, start_step=2), 2)
  from_generator = _take(input_pipeline.create_train_dataset(
      config, _source(examples), start_step=2, num_examples=6), 2)
  for a, b in zip(from_slices, from_generator):
    np.testing.assert_array_equal(a['image'], b['image'])


def test_infinite_source_is_a_clear_error():
  with pytest.raises(ValueError, match='infinite'):
    input_pipeline.create_train_dataset(
        _config(), _source(_examples(3)).repeat())


@pytest.mark.parametrize('num_examples', [7, 8, 1])
def test_eval_hosts_run_equal_steps_with_masked_padding(num_examples):
  examples = _examples(num_examples)
  config = _config(eval_batch_size=4)
  per_host = input_pipeline.eval_examples_per_host(num_examples, 2)
  num_steps = input_pipeline.num_eval_steps(num_examples, 4, 2)
  # Contiguous shards of sizes ceil(n/2) and floor(n/2), as tfds.even_splits.
  shards = [examples[:per_host], examples[per_host:]]
  seen = []
  for process_index, shard in enumerate(shards):
    batches = list(input_pipeline.create_eval_dataset(
        config, _source(shard), process_index=process_index, process_count=2,
        num_examples_per_host=per_host).as_numpy_iterator())
    assert len(batches) == num_steps
    masks = np.concatenate([b['mask'] for b in batches])
    assert masks.tolist() == [True] * len(shard) + [False] * (
        num_steps * 2 - len(shard))
    for batch in batches:
      assert batch['image'].shape == (2, 41, 41, 3)
      assert batch['label'].shape == (2, 41, 41)
      assert batch['image'].dtype == batch['label'].dtype == np.uint8
      for i in range(2):
        name = batch['name'][i].decode()
        if not batch['mask'][i]:
          assert name == '' and np.all(batch['label'][i] == 255)
          assert np.all(batch['image'][i] == 128)  # 127.5 rounded; restored on device.
          continue
        seen.append(name)
        example = examples[int(name[4:])]
        height, width = example['image'].shape[:2]
        assert (batch['height'][i], batch['width'][i]) == (height, width)
        np.testing.assert_array_equal(batch['image'][i, :height, :width],
                                      example['image'])
        np.testing.assert_array_equal(batch['label'][i, :height, :width],
                                      example['label'][..., 0])
        assert np.all(batch['label'][i, height:] == 255)
        assert np.all(batch['image'][i, :, width:] == 128)
  assert seen == [e['name'] for e in examples]  # File order, each once.


def test_eval_without_per_host_size_on_several_hosts_is_an_error():
  with pytest.raises(ValueError, match='num_examples_per_host'):
    input_pipeline.create_eval_dataset(
        _config(), _source(_examples(3)), process_count=2)


def test_eval_single_host_counts_its_shard_and_cuts_to_a_given_size():
  examples = _examples(5)
  batches = list(input_pipeline.create_eval_dataset(
      _config(eval_batch_size=2), _source(examples)).as_numpy_iterator())
  assert [b['mask'].tolist() for b in batches] == [[True, True], [True, True],
                                                   [True, False]]
  # E.g. config.num_eval_images: the first three examples only.
  batches = list(input_pipeline.create_eval_dataset(
      _config(eval_batch_size=2), _source(examples),
      num_examples_per_host=3).as_numpy_iterator())
  assert [n.decode() for b in batches for n in b['name']] == [
      'img_000', 'img_001', 'img_002', '']


def test_eval_with_resize_range_reports_the_resized_size():
  examples = _examples(2, min_size=50, max_size=60)
  config = _config(eval_batch_size=2)
  config.dataset.min_resize_value = 41
  config.dataset.max_resize_value = 41
  batch = next(input_pipeline.create_eval_dataset(
      config, _source(examples)).as_numpy_iterator())
  for i, example in enumerate(examples):
    height, width = example['image'].shape[:2]
    assert max(batch['height'][i], batch['width'][i]) == 41
    assert abs(batch['height'][i] / batch['width'][i] - height / width) < 0.05


def test_measure_throughput_counts_images_per_second():
  dataset = input_pipeline.create_train_dataset(_config(),
                                                _source(_examples(8)))
  images_per_second = input_pipeline.measure_throughput(dataset, 3)
  assert images_per_second > 0
