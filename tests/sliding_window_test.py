"""Sliding-window prediction (config.eval_mode='slide').

One window equals whole-image inference; several windows per side equal a
reference scored window by window in NumPy from the model's own scores; the
export, the Predictor and batched evaluation of differently sized images agree.
"""

import os

from clu import metric_writers
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import config_files
from deeplab_jax import canvas
from deeplab_jax import config_checks
from deeplab_jax import evaluate
from deeplab_jax import export
from deeplab_jax import metrics
from deeplab_jax import predictor
from deeplab_jax import scoring
from deeplab_jax import visualize
from deeplab_jax.data import datasets
from deeplab_jax.model import create_model
from export_test import natural_image
from predictor_test import make_variables
from visualize_test import find

voc_mnv2 = config_files.module('voc_mnv2')

CROP, STRIDE = 65, (40, 44)


def tiny_config(**fields):
  config = voc_mnv2.get_config('tiny')
  config.model.depth_multiplier = 0.25
  config.eval_crop_size = (CROP, CROP)
  config.eval_slide_stride = STRIDE
  for name, value in fields.items():
    config[name] = value
  return config


@pytest.fixture(scope='module')
def tiny():
  config = tiny_config()
  return config, make_variables(config)


def slide_predictor(config, variables, **fields):
  config = config.copy_and_resolve_references()
  config.eval_mode = 'slide'
  for name, value in fields.items():
    config[name] = value
  return predictor.Predictor.from_variables(config, variables, check=False)


def window_starts(size, crop, stride):
  """mmseg's rule, written out: steps of `stride`, the last window ending at the border."""
  count = max(size - crop + stride - 1, 0) // stride + 1
  return [max(min(i * stride, size - crop), 0) for i in range(count)]


def reference_scores(config, variables, image, scales=(1.0,), flip=False):
  """Averaged window scores [H, W, C], one window at a time."""
  model = create_model(config)
  score = jax.jit(lambda x: scoring.window_scores(model, variables, x, scales, flip))
  height, width = image.shape[:2]
  total, count = np.zeros((height, width, config.model.num_classes)), np.zeros((height, width, 1))
  for top in window_starts(height, CROP, STRIDE[0]):
    for left in window_starts(width, CROP, STRIDE[1]):
      window = image[top:top + CROP, left:left + CROP].astype(np.float32)
      total[top:top + CROP, left:left + CROP] += np.asarray(score(window[None]))[0]
      count[top:top + CROP, left:left + CROP] += 1
  return total / count


def assert_labels_of(labels, scores):
  """Labels are the argmax of `scores`, but for near ties (float sums in another order)."""
  top2 = np.sort(scores, -1)[..., -2:]
  differ = labels != scores.argmax(-1)
  assert np.all(top2[..., 1][differ] - top2[..., 0][differ] < 1e-4), f'{differ.sum()} differ'
  assert len(np.unique(labels)) >= 3  # The comparison means something.


def test_window_starts_cover_three_or_more_per_side():
  assert window_starts(150, CROP, 40) == [0, 40, 80, 85]
  assert window_starts(170, CROP, 44) == [0, 44, 88, 105]
  assert window_starts(50, CROP, 40) == [0]  # Smaller than the crop: one padded window.
  assert canvas.slide_canvas_size((150, 170), (CROP, CROP), STRIDE) == (145 + 40, 65 + 3 * 44)


def test_slide_equals_whole_on_images_that_fit_one_window(tiny):
  config, variables = tiny
  whole = predictor.Predictor.from_variables(config, variables, check=False)
  slide = slide_predictor(config, variables)
  for image in (natural_image(50, 60, seed=1), natural_image(CROP, CROP, seed=2)):
    labels, probabilities = slide.predict_probabilities(image)
    whole_labels, whole_probabilities = whole.predict_probabilities(image)
    assert len(np.unique(whole_labels)) >= 3
    np.testing.assert_array_equal(labels, whole_labels)
    np.testing.assert_allclose(probabilities, whole_probabilities, atol=1e-5)


def test_slide_three_or_more_windows_per_side_average_the_window_scores(tiny):
  config, variables = tiny
  image = natural_image(150, 170, seed=3)  # 4 x 4 windows.
  labels, probabilities = slide_predictor(config, variables).predict_probabilities(image)
  scores = reference_scores(config, variables, image)
  assert labels.shape == (150, 170)
  assert_labels_of(labels, scores)
  np.testing.assert_allclose(probabilities, jax.nn.softmax(scores, -1), atol=1e-4)


def test_multi_scale_and_flip_compose_with_slide(tiny):
  config, variables = tiny
  scales, flip = (0.5, 1.0), True
  slide = slide_predictor(config, variables, eval_scales=scales, eval_flip=flip)
  multi = config.copy_and_resolve_references()
  multi.eval_scales, multi.eval_flip = scales, flip
  small = natural_image(50, 60, seed=4)
  np.testing.assert_array_equal(
      slide.predict(small),
      predictor.Predictor.from_variables(multi, variables, check=False).predict(small))
  image = natural_image(130, 140, seed=5)  # 3 x 3 windows.
  labels, probabilities = slide.predict_probabilities(image)
  scores = reference_scores(config, variables, image, scales, flip)
  assert_labels_of(labels, scores)
  np.testing.assert_allclose(probabilities, scores, atol=1e-4)


def test_exported_slide_model_takes_any_size_at_full_resolution(tiny, tmp_path):
  config, variables = tiny
  config = config.copy_and_resolve_references()
  config.eval_mode = 'slide'
  info = export.export_model(config, variables, str(tmp_path), tflite=False, platforms=('cpu',))
  assert info['eval_mode'] == 'slide' and info['slide_stride'] == list(STRIDE)
  served = predictor.Predictor.from_export(str(tmp_path))
  saved_model = tf.saved_model.load(str(tmp_path / export.SAVED_MODEL_DIR))
  in_process = slide_predictor(config, variables)
  for image in (natural_image(150, 170, seed=6), natural_image(40, 90, seed=7)):
    labels = in_process.predict(image)
    np.testing.assert_array_equal(served.predict(image), labels)
    np.testing.assert_array_equal(
        saved_model.signatures['serving_default'](images=tf.constant(image[None]))['labels']
        .numpy()[0], labels)


def sized_source(sizes, num_classes=21):
  """Raw examples of different sizes, labels from the image (so classes vary)."""
  def generate():
    for index, (height, width) in enumerate(sizes):
      image = natural_image(height, width, seed=10 + index)
      label = (image[..., 0] // 40).astype(np.uint8) % num_classes
      label[0] = 255
      yield {'image': image, 'label': label[..., None], 'name': f'image{index}'}
  return tf.data.Dataset.from_generator(generate, output_signature={
      'image': tf.TensorSpec([None, None, 3], tf.uint8),
      'label': tf.TensorSpec([None, None, 1], tf.uint8),
      'name': tf.TensorSpec([], tf.string)})


class RecordingWriter(metric_writers.MetricWriter):
  """Keeps what evaluation writes to TensorBoard."""

  def __init__(self):
    self.images, self.texts, self.scalars = {}, {}, {}

  def write_images(self, step, images):
    self.images.update(images)

  def write_texts(self, step, texts):
    self.texts.update(texts)

  def write_scalars(self, step, scalars):
    self.scalars.update(scalars)

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def test_slide_evaluation_batches_different_sizes_as_each_image_alone(tiny, tmp_path):
  config, variables = tiny
  config = config.copy_and_resolve_references()
  config.eval_mode = 'slide'
  config.dataset.min_resize_value = None
  config.dataset.max_resize_value = None
  config.num_eval_images = None
  config.num_prediction_images = 2
  config.eval_batch_size = 2
  sizes = [(150, 170), (40, 90), (100, 66)]  # Larger and smaller than the crop, in one batch.
  writer = RecordingWriter()
  results = evaluate.evaluate(config, str(tmp_path), variables, 3, source=sized_source(sizes),
                              writer=writer)
  slide = slide_predictor(config, variables)
  confusion = np.zeros((21, 21), np.int64)
  for example in sized_source(sizes).as_numpy_iterator():
    confusion += np.asarray(metrics.confusion_matrix(
        example['label'][None, ..., 0].astype(np.int32), slide.predict(example['image'])[None],
        21, 255))
  expected = metrics.segmentation_metrics(confusion, [str(i) for i in range(21)])
  assert results['eval_mode'] == 'slide' and results['num_images'] == 3
  assert results['mean_iou'] == pytest.approx(expected['mean_iou'], abs=1e-9)
  assert results['num_pixels'] == expected['num_pixels']

  # The pictures: a titled panel per sample at the image's full size, the
  # confusion matrix and the IoU chart, as files and in TensorBoard.
  files = sorted(os.listdir(tmp_path / 'eval_images'))
  assert files == ['step0000003_00_image0.png', 'step0000003_01_image1.png',
                   'step0000003_confusion_matrix.png', 'step0000003_per_class_iou.png']
  assert set(writer.images) == {'eval/comparison_0', 'eval/comparison_1',
                                'eval/confusion_matrix', 'eval/per_class_iou'}
  first = np.asarray(Image.open(tmp_path / 'eval_images' / files[0]))
  np.testing.assert_array_equal(writer.images['eval/comparison_0'][0], first)
  assert find(first, natural_image(150, 170, seed=10)) is not None  # At full size.
  matrix = np.asarray(Image.open(tmp_path / 'eval_images' / files[2]))
  np.testing.assert_array_equal(matrix, visualize.confusion_matrix_picture(
      confusion, datasets.output_facts(config)[1],
      f'Confusion matrix at step 3 ({config.dataset.eval_split})'))
  np.testing.assert_array_equal(writer.images['eval/confusion_matrix'][0], matrix)
  table = writer.texts['eval/per_class_iou']
  assert table.splitlines()[0].split() == ['class', 'IoU']
  assert f'{results["mean_iou"]:.4f}' in table.splitlines()[-1]


def test_slide_mode_no_longer_needs_an_eval_crop_as_large_as_the_images():
  config = tiny_config(eval_crop_size=(513, 513))
  config.dataset.min_resize_value = config.dataset.max_resize_value = None
  with pytest.raises(config_checks.ConfigError, match='eval_crop_size'):
    config_checks.check_eval_crop_fits(config, (1024, 2048), 'cityscapes validation')
  config.eval_mode = 'slide'
  config_checks.check_eval_crop_fits(config, (1024, 2048), 'cityscapes validation')
  config.dataset.min_resize_value = 513  # Long sides unbounded: no canvas holds them all.
  with pytest.raises(config_checks.ConfigError, match='max_resize_value'):
    config_checks.check_eval_crop_fits(config, (1024, 2048), 'cityscapes validation')


@pytest.mark.parametrize('fields, message', [
    (dict(eval_mode='sliding'), 'eval_mode'),
    (dict(eval_slide_stride=(80, 40)), 'must not exceed'),
    (dict(eval_slide_stride=(0, 40)), 'eval_slide_stride'),
])
def test_bad_slide_settings_are_refused(fields, message):
  with pytest.raises(config_checks.ConfigError, match=message):
    config_checks.check_evaluation(tiny_config(**fields), num_devices=1)
