"""Confusion matrix and mean IoU: hand-computed cases and TF's mean_iou."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax import metrics


def test_reference_verified_case():
  # labels [0, 0, 1, 0, (ignored)] vs predictions [0, 0, 1, 1, x] -> (2/3 + 1/2) / 2.
  labels = np.array([[[0, 0, 1, 0, 255]]])
  predictions = np.array([[[0, 0, 1, 1, 2]]])
  confusion = metrics.confusion_matrix(labels, predictions, num_classes=3)
  np.testing.assert_array_equal(confusion, [[2, 1, 0], [0, 1, 0], [0, 0, 0]])
  assert confusion.dtype == jnp.int32
  result = metrics.segmentation_metrics(confusion, class_names=['bg', 'cat', 'dog'])
  assert result['mean_iou'] == pytest.approx(0.58333333333, abs=1e-10)
  assert result['pixel_accuracy'] == pytest.approx(0.75)
  assert result['per_class_iou'] == {'bg': pytest.approx(2 / 3), 'cat': 0.5, 'dog': None}
  assert result['num_pixels'] == 4


def test_predicted_but_absent_class_counts_zero_and_empty_is_zero():
  confusion = np.array([[3, 1], [0, 0]])
  result = metrics.segmentation_metrics(confusion)
  assert result['per_class_iou'] == {'0': 0.75, '1': 0.0}
  assert result['mean_iou'] == pytest.approx(0.375)
  empty = metrics.segmentation_metrics(np.zeros((3, 3)))
  assert empty['mean_iou'] == 0.0 and empty['pixel_accuracy'] == 0.0
  assert empty['per_class_iou'] == {'0': None, '1': None, '2': None}


def test_mask_drops_padding_examples_and_channel_axis_is_accepted():
  labels = np.array([[[0, 1]], [[1, 1]]])
  predictions = np.array([[[0, 0]], [[0, 0]]])
  confusion = metrics.confusion_matrix(labels[..., None], predictions[..., None], 2,
                                       mask=np.array([True, False]))
  np.testing.assert_array_equal(confusion, [[1, 0], [1, 0]])


def test_jit_with_ignore_label_zero_like_ade20k():
  labels = jnp.array([[[0, 1, 2, 2]]])
  predictions = jnp.array([[[1, 1, 0, 2]]])
  confusion = jax.jit(metrics.confusion_matrix, static_argnums=(2, 3))(labels, predictions, 3, 0)
  # Label 0 is ignored; a prediction of class 0 still lands in column 0.
  np.testing.assert_array_equal(confusion, [[0, 0, 0], [0, 1, 0], [1, 0, 1]])
  result = metrics.segmentation_metrics(confusion)
  assert result['per_class_iou'] == {'0': 0.0, '1': 1.0, '2': 0.5}


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match=r'labels contain values outside \[0, 3\)'):
    metrics.confusion_matrix(np.array([[[0, 7]]]), np.array([[[0, 0]]]), 3)
  with pytest.raises(ValueError, match='differ in shape'):
    metrics.confusion_matrix(np.zeros((1, 2, 2)), np.zeros((1, 2, 3)), 3)
  with pytest.raises(ValueError, match='mask'):
    metrics.confusion_matrix(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), 3, mask=np.ones(3, bool))
  with pytest.raises(ValueError, match='square'):
    metrics.segmentation_metrics(np.zeros((2, 3)))


def test_matches_tensorflow_mean_iou_on_random_data():
  import tensorflow as tf  # Heavy; imported only for this cross-check.
  rng = np.random.default_rng(7)
  num_classes = 7  # Class 6 is in neither, so it is dropped from the mean.
  labels = rng.integers(0, 6, size=(3, 9, 11))
  labels[rng.random(labels.shape) < 0.2] = 255
  labels[labels == 4] = 255  # One class never in the ground truth...
  predictions = rng.integers(0, 5, size=labels.shape)  # ...and one never predicted.
  predictions[labels == 5] = 0  # Class 5: in ground truth, never right.
  confusion = np.zeros((num_classes, num_classes), np.int64)
  for i in range(3):  # Accumulated over steps as in evaluation.
    confusion += np.asarray(metrics.confusion_matrix(labels[i:i + 1], predictions[i:i + 1],
                                                     num_classes))
  ours = metrics.segmentation_metrics(confusion)

  with tf.Graph().as_default():
    valid = labels.reshape(-1) != 255
    mean_iou, update = tf.compat.v1.metrics.mean_iou(
        tf.constant(np.where(valid, labels.reshape(-1), 0)), tf.constant(predictions.reshape(-1)),
        num_classes, weights=tf.constant(valid.astype(np.float32)))
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.local_variables_initializer())
      tf_confusion = session.run(update)
      tf_mean_iou = session.run(mean_iou)
  np.testing.assert_array_equal(confusion, tf_confusion)
  assert ours['mean_iou'] == pytest.approx(float(tf_mean_iou), rel=1e-6)
  assert ours['per_class_iou']['5'] == 0.0 and ours['per_class_iou']['4'] == 0.0
  assert ours['per_class_iou']['6'] is None
  assert ours['num_pixels'] == int(valid.sum())


def test_per_class_table_aligns_names_and_marks_absent_classes():
  table = metrics.per_class_table({'background': 0.91234, 'tv/monitor': None, 'cat': 0.5}, 0.70617)
  assert table.splitlines() == [
      'class       IoU',
      'background  0.9123',
      'tv/monitor  n/a',
      'cat         0.5000',
      'mean IoU    0.7062',
  ]
