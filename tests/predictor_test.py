"""Predictor: fitting any image into the canvas, predicting, mapping back.

Whole predictions are checked against `scoring` run on a canvas padded by hand
(the canvas steps alone: canvas_test.py).
"""

import numpy as np
import jax
import jax.numpy as jnp
import pytest

import config_files
from deeplab_jax import checkpointing
from deeplab_jax import predictor
from deeplab_jax import scoring
from deeplab_jax.model import create_model
from deeplab_jax.resize import resize_bilinear, resize_nearest
from export_test import natural_image, random_variables, with_calibrated_logits

voc_mnv2 = config_files.module('voc_mnv2')

CROP = 129


# --- Whole predictions -------------------------------------------------------------

def make_variables(config):
  model = create_model(config)
  variables = random_variables(config)
  image = jnp.asarray(natural_image(CROP, CROP), jnp.float32)[None]
  return with_calibrated_logits(variables, jax.jit(model.apply)(variables, image))


@pytest.fixture(scope='module')
def tiny():
  config = voc_mnv2.get_config('tiny')
  return config, make_variables(config)


def reference(config, variables, image, fitted, canvas_hw):
  """(labels [H, W], top-2 probability margin [H, W]) from a hand-made canvas."""
  model = create_model(config)
  height, width = image.shape[:2]
  x = resize_bilinear(jnp.asarray(image, jnp.float32)[None], fitted)
  x = jnp.pad(x, ((0, 0), (0, canvas_hw[0] - fitted[0]), (0, canvas_hw[1] - fitted[1]), (0, 0)),
              constant_values=127.5)
  probabilities = jax.jit(scoring.class_probabilities, static_argnums=(0, 3, 4))(
      model, variables, x, tuple(config.eval_scales), bool(config.eval_flip))
  probabilities = resize_nearest(probabilities[:, :fitted[0], :fitted[1]], (height, width))[0]
  top2 = np.sort(np.asarray(probabilities), axis=-1)[..., -2:]
  return np.asarray(jnp.argmax(probabilities, -1)), top2[..., 1] - top2[..., 0]


def assert_same_labels(labels, expected_and_margin):
  expected, margin = expected_and_margin
  assert labels.dtype == np.int32 and labels.shape == expected.shape
  differ = labels != expected
  assert differ.mean() <= 0.001 and np.all(margin[differ] < 1e-4), f'{differ.sum()} differ'
  assert len(np.unique(expected)) >= 3  # The comparison means something.


def test_images_that_fit_are_padded_to_the_crop(tiny):
  config, variables = tiny
  image = natural_image(97, 120)
  labels = predictor.Predictor.from_variables(config, variables).predict(image)
  assert_same_labels(labels, reference(config, variables, image, (97, 120), (CROP, CROP)))


def test_larger_images_are_shrunk_to_fit_and_labels_mapped_back(tiny):
  config, variables = tiny
  model = predictor.Predictor.from_variables(config, variables)
  for image_hw, fitted in [((97, 130), (96, 129)), ((300, 200), (129, 86))]:
    image = natural_image(*image_hw, seed=3)
    labels = model.predict(image)
    assert_same_labels(labels, reference(config, variables, image, fitted, (CROP, CROP)))


def test_resize_long_side_enlarges_small_images(tiny):
  config, variables = tiny
  image = natural_image(60, 80, seed=4)
  labels = predictor.Predictor.from_variables(config, variables, resize_long_side=120).predict(
      image)
  assert_same_labels(labels, reference(config, variables, image, (90, 120), (CROP, CROP)))


def test_pad_to_crop_false_pads_to_the_smallest_valid_size(tiny):
  config, variables = tiny
  image = natural_image(97, 120, seed=5)
  labels = predictor.Predictor.from_variables(config, variables, pad_to_crop=False).predict(image)
  assert_same_labels(labels, reference(config, variables, image, (97, 120), (97, 129)))


def test_batches_and_probabilities(tiny):
  config, variables = tiny
  model = predictor.Predictor.from_variables(config, variables)
  images = np.stack([natural_image(97, 120, seed=6), natural_image(97, 120, seed=7)])
  labels = model.predict(images)
  assert labels.shape == (2, 97, 120)
  np.testing.assert_array_equal(labels[1], model.predict(images[1]))
  single_labels, probabilities = model.predict_probabilities(images[1])
  assert probabilities.shape == (97, 120, 21) and probabilities.dtype == np.float32
  np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_array_equal(single_labels, probabilities.argmax(-1))
  assert (single_labels == labels[1]).mean() > 0.999


def test_multi_scale_and_flip_from_the_config():
  config = voc_mnv2.get_config('tiny')
  config.eval_crop_size = (65, 65)
  config.eval_scales = (0.5, 1.0)
  config.eval_flip = True
  variables = make_variables(config)
  image = natural_image(50, 60, seed=8)
  labels = predictor.Predictor.from_variables(config, variables).predict(image)
  assert_same_labels(labels, reference(config, variables, image, (50, 60), (65, 65)))


def test_an_unset_eval_crop_slides_windows_of_the_training_crop(tiny):
  # configs/custom.py leaves eval_crop_size unset; the Python API resolves it too.
  config, variables = tiny
  config = config.copy_and_resolve_references()
  config.eval_mode, config.train_crop_size = 'slide', (65, 65)
  explicit = config.copy_and_resolve_references()
  explicit.eval_crop_size = (65, 65)
  config.eval_crop_size = None
  model = predictor.Predictor.from_variables(config, variables)
  assert config.eval_crop_size is None  # The caller's config is left as it was.
  assert model.info['crop_size'] == [65, 65] and model.info['slide_stride'] == [43, 43]
  image = natural_image(70, 100, seed=3)
  np.testing.assert_array_equal(
      model.predict(image), predictor.Predictor.from_variables(explicit, variables).predict(image))


def test_from_workdir_restores_the_latest_checkpoint(tiny, tmp_path):
  config, variables = tiny
  checkpointing.save_variables(str(tmp_path), variables, step=7)
  model = predictor.Predictor.from_workdir(config, str(tmp_path))
  assert model.info['step'] == 7
  image = natural_image(97, 120)
  np.testing.assert_array_equal(
      model.predict(image), predictor.Predictor.from_variables(config, variables).predict(image))


def test_from_workdir_without_checkpoints_says_what_to_do(tiny, tmp_path):
  config, _ = tiny
  with pytest.raises(FileNotFoundError, match='No checkpoint'):
    predictor.Predictor.from_workdir(config, str(tmp_path))


@pytest.mark.parametrize('image, message', [
    (np.zeros((10, 10, 3), np.float32), 'must be uint8'),
    (np.zeros((10, 10), np.uint8), r'\[H, W, 3\]'),
    (np.zeros((10, 10, 4), np.uint8), 'RGBA'),
    (np.zeros((0, 10, 3), np.uint8), 'empty'),
])
def test_bad_images_are_refused_clearly(image, message):
  model = predictor.Predictor(lambda images: None)
  with pytest.raises(ValueError, match=message):
    model.predict(image)


def test_probabilities_of_a_labels_only_model_are_refused():
  model = predictor.Predictor(lambda images: images[..., 0].astype(np.int32))
  assert model.predict(np.zeros((4, 5, 3), np.uint8)).shape == (4, 5)
  with pytest.raises(ValueError, match='with_probabilities=True'):
    model.predict_probabilities(np.zeros((4, 5, 3), np.uint8))
