"""The original DeepLab preprocessing: sizes, resizing, padding, crop and flip."""

import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import numpy as np  # pylint: disable=g-import-not-at-top
import pytest
import tensorflow as tf

from conftest import fixtures_dir
from deeplab_jax.data import preprocessing


def _coordinate_example(height, width):
  """An image whose channels hold (row, col, 0) and a label unique per pixel."""
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  image = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
  label = (rows * width + cols).astype(np.uint8)[..., np.newaxis]
  return image, label


def test_eval_preprocessing_matches_the_original_bit_for_bit():
  # The golden inputs went through the original with min/max resize = 513.
  golden = np.load(os.path.join(fixtures_dir(), 'mnv2_voc_os16', 'golden.npz'))
  for i, (height, width) in enumerate(golden['image_hw']):
    image = golden['image_uint8'][i, :height, :width]
    label = np.zeros((height, width, 1), np.uint8)
    processed, processed_label = preprocessing.preprocess_image_and_label(
        image, label, crop_size=(513, 513), is_training=False,
        min_resize_value=513, max_resize_value=513)
    np.testing.assert_array_equal(processed.numpy(), golden['inputs'][i])
    resized_h, resized_w = golden['resized_hw'][i]
    assert np.all(processed_label.numpy()[:resized_h, :resized_w] == 0)
    assert np.all(processed_label.numpy()[resized_h:] == 255)
    assert np.all(processed_label.numpy()[:, resized_w:] == 255)


@pytest.mark.parametrize('size, min_size, max_size, factor, expected', [
    ((427, 640), 513, 513, None, (343, 513)),  # golden image 1
    ((358, 500), 513, 513, None, (368, 513)),  # golden image 2
    ((512, 683), 513, 513, 16, (385, 497)),  # ADE20K examples (reference §4.3)
    ((1000, 200), 513, 513, 16, (497, 113)),
    # Short side to min_size, no cap. The original's float32 arithmetic gives
    # 50 * float32(60 / 50) = 60.000004, which its ceil turns into 61.
    ((100, 50), 60, None, None, (121, 61)),
    ((100, 40), 60, None, None, (150, 60)),
    ((100, 40), 60, None, 16, (161, 65)),  # then up to 16k + 1
])
def test_resize_to_range_size(size, min_size, max_size, factor, expected):
  new_size = preprocessing.resize_to_range_size(
      *size, min_size=min_size, max_size=max_size, factor=factor)
  assert tuple(new_size.numpy()) == expected


def test_resize_is_tf1_align_corners():
  row = tf.constant(np.arange(5, dtype=np.float32).reshape(1, 5, 1))
  up = preprocessing.resize_bilinear(row, tf.constant([1, 9]))
  np.testing.assert_allclose(up.numpy().ravel(), np.arange(9) / 2)
  down = preprocessing.resize_bilinear(row, tf.constant([1, 4]))
  np.testing.assert_allclose(down.numpy().ravel(), [0, 4 / 3, 8 / 3, 4],
                             rtol=1e-6)
  labels = tf.constant(np.arange(4, dtype=np.int32).reshape(1, 4, 1))
  nearest = preprocessing.resize_nearest(labels, tf.constant([1, 7]))
  np.testing.assert_array_equal(nearest.numpy().ravel(), [0, 1, 1, 2, 2, 3, 3])


def test_scaling_truncates_sizes_and_keeps_corners():
  image, label = _coordinate_example(5, 7)
  scaled, scaled_label = preprocessing.scale_image_and_label(
      tf.cast(image, tf.float32), tf.cast(label, tf.int32), tf.constant(0.75))
  assert scaled.shape == (3, 5, 3)  # int(5 * .75), int(7 * .75)
  # Align corners: the corner pixels map onto the corners.
  np.testing.assert_array_equal(scaled.numpy()[0, 0], [0, 0, 0])
  np.testing.assert_array_equal(scaled.numpy()[-1, -1], [4, 6, 0])
  np.testing.assert_allclose(scaled.numpy()[1, :, 1], [0, 1.5, 3, 4.5, 6])
  # Labels are picked, never blended: rows 0, 2, 4 and columns 0, 2, 3, 5, 6
  # (1.5 and 4.5 round half away from zero).
  expected = label[[0, 2, 4]][:, [0, 2, 3, 5, 6], 0]
  np.testing.assert_array_equal(scaled_label.numpy()[..., 0], expected)


def test_eval_pads_bottom_right_with_mean_pixel_and_ignore_label():
  image, label = _coordinate_example(2, 3)
  processed, processed_label = preprocessing.preprocess_image_and_label(
      image + 10, label, crop_size=(4, 5), is_training=False, ignore_label=7)
  processed = processed.numpy()
  processed_label = processed_label.numpy()[..., 0]
  np.testing.assert_array_equal(processed[:2, :3], image + 10)
  assert np.all(processed[2:] == 127.5) and np.all(processed[:, 3:] == 127.5)
  np.testing.assert_array_equal(processed_label[:2, :3], label[..., 0])
  assert np.all(processed_label[2:] == 7) and np.all(processed_label[:, 3:] == 7)
  assert processed.dtype == np.float32 and processed_label.dtype == np.int32


def test_mean_pixel_per_backbone():
  assert preprocessing.mean_pixel('mobilenet_v2') == (127.5,) * 3
  assert preprocessing.mean_pixel('resnet_v1_50_beta') == (127.5,) * 3
  assert preprocessing.mean_pixel('resnet_v1_101') == (123.15, 115.90, 103.06)
  processed, _ = preprocessing.preprocess_image_and_label(
      np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1, 1), np.uint8),
      crop_size=(2, 2), is_training=False,
      pad_pixel=preprocessing.mean_pixel('resnet_v1_50'))
  np.testing.assert_allclose(processed.numpy()[1, 1], [123.15, 115.90, 103.06],
                             rtol=1e-6)


def test_eval_image_larger_than_crop_is_a_clear_error():
  image, label = _coordinate_example(6, 4)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='(?s)img_007.*eval_crop_size'):
    preprocessing.preprocess_image_and_label(
        image, label, crop_size=(5, 5), is_training=False,
        name=tf.constant('img_007'))
  # A resize range that makes it fit is fine: long side 6 -> 5.
  processed, _ = preprocessing.preprocess_image_and_label(
      image, label, crop_size=(5, 5), is_training=False,
      min_resize_value=5, max_resize_value=5)
  assert processed.shape == (5, 5, 3)


def test_label_of_another_size_is_a_clear_error():
  image, _ = _coordinate_example(6, 4)
  with pytest.raises(tf.errors.InvalidArgumentError, match='(?s)bad_one.*label'):
    preprocessing.preprocess_image_and_label(
        image, np.zeros((6, 5, 1), np.uint8), crop_size=(8, 8),
        is_training=False, name=tf.constant('bad_one'))


def test_bad_scale_range_is_a_clear_error():
  with pytest.raises(ValueError, match='min_scale_factor'):
    preprocessing.random_scale(tf.constant([0, 1]), 2.0, 0.5, 0.25)


def test_random_scale_draws_from_the_grid():
  seeds = [tf.constant([3, i]) for i in range(150)]
  grid = {preprocessing.random_scale(s, 0.5, 2.0, 0.25).numpy() for s in seeds}
  assert grid == {0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0}
  uniform = [preprocessing.random_scale(s, 0.5, 2.0, 0.0).numpy()
             for s in seeds[:50]]
  assert all(0.5 <= s < 2.0 for s in uniform)
  assert len(set(uniform)) == 50
  assert preprocessing.random_scale(seeds[0], 1.5, 1.5, 0.25).numpy() == 1.5


def test_train_crop_and_flip_move_image_and_label_together():
  height, width = 10, 15
  image, label = _coordinate_example(height, width)
  flips = set()
  offsets = set()
  for i in range(24):
    processed, processed_label = preprocessing.preprocess_image_and_label(
        image, label, crop_size=(6, 7), is_training=True,
        seed=tf.constant([0, i], tf.int64))
    rows = processed.numpy()[..., 0].astype(int)
    cols = processed.numpy()[..., 1].astype(int)
    # Every output pixel carries the label of the input pixel it came from.
    np.testing.assert_array_equal(processed_label.numpy()[..., 0],
                                  rows * width + cols)
    # A contiguous window, maybe mirrored left-right.
    assert np.all(np.diff(rows, axis=0) == 1) and np.all(rows == rows[:, :1])
    step = np.diff(cols, axis=1)
    assert np.all(step == step[0, 0]) and abs(step[0, 0]) == 1
    flips.add(step[0, 0] == -1)
    offsets.add((rows[0, 0], cols[:, 0].min() if step[0, 0] == 1 else cols[0, -1]))
  assert flips == {True, False}
  assert len(offsets) > 5  # The crop position varies with the seed.


def test_train_pads_small_images_before_cropping():
  image = np.full((3, 4, 3), 9, np.uint8)
  label = np.full((3, 4, 1), 2, np.uint8)
  processed, processed_label = preprocessing.preprocess_image_and_label(
      image, label, crop_size=(9, 9), is_training=True,
      seed=tf.constant([1, 2]), ignore_label=255)
  processed = processed.numpy()
  processed_label = processed_label.numpy()[..., 0]
  assert processed.shape == (9, 9, 3)
  np.testing.assert_array_equal(processed_label == 2, processed[..., 0] == 9)
  assert set(np.unique(processed)) == {9.0, 127.5}
  assert set(np.unique(processed_label)) == {2, 255}
  # Padding is bottom/right: before any flip the real pixels are at the top left.
  assert processed_label[0].tolist().count(2) == 4
  assert (processed_label[:, 0] == 2).sum() + (processed_label[:, -1] == 2).sum() == 3


def test_training_augmentation_is_a_function_of_the_seed():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
  label = rng.integers(0, 21, (40, 50, 1), dtype=np.uint8)

  def run(seed):
    return preprocessing.preprocess_image_and_label(
        image, label, crop_size=(33, 33), is_training=True,
        seed=tf.constant(seed, tf.int64), min_scale_factor=0.5,
        max_scale_factor=2.0, scale_factor_step_size=0.25)

  first, first_label = run([5, 11])
  again, again_label = run([5, 11])
  other, _ = run([5, 12])
  np.testing.assert_array_equal(first.numpy(), again.numpy())
  np.testing.assert_array_equal(first_label.numpy(), again_label.numpy())
  assert not np.array_equal(first.numpy(), other.numpy())
  # Nearest-neighbour labels: only original class ids or the ignore label.
  assert set(np.unique(first_label.numpy())) <= set(range(21)) | {255}


def test_preprocessing_runs_inside_tf_data():
  image, label = _coordinate_example(20, 30)
  dataset = tf.data.Dataset.from_tensors(
      {'image': image, 'label': label}).repeat(3).enumerate()

  def preprocess(i, example):
    return preprocessing.preprocess_image_and_label(
        example['image'], example['label'], crop_size=(17, 17),
        is_training=True, seed=tf.stack([tf.constant(0, tf.int64), i]),
        min_scale_factor=0.5, max_scale_factor=2.0, scale_factor_step_size=0.25)

  outputs = list(dataset.map(preprocess).as_numpy_iterator())
  eager = [preprocess(tf.constant(i, tf.int64), {'image': image, 'label': label})
           for i in range(3)]
  for (graph_image, graph_label), (eager_image, eager_label) in zip(outputs,
                                                                    eager):
    assert graph_image.shape == (17, 17, 3) and graph_label.shape == (17, 17, 1)
    np.testing.assert_array_equal(graph_image, eager_image.numpy())
    np.testing.assert_array_equal(graph_label, eager_label.numpy())
