"""Parity with the original DeepLab on the golden fixtures (../shared/fixtures).

Each fixture is a model-zoo-format TF checkpoint plus the original network's
inputs and outputs. Loading it and reproducing the logits (within 1e-3) and
the predicted classes (>= 99.9% of pixels) proves the port is faithful.
"""

import json
import os

import jax
import ml_collections
import numpy as np
import pytest

import deeplab_jax
from deeplab_jax import config_defaults as defaults
from conftest import fixtures_dir

LOGITS_ATOL = 1e-3
MIN_AGREEMENT = 0.999


def fixture_config(name: str) -> ml_collections.ConfigDict:
  """Our config for the ModelOptions recorded in the fixture's meta.json."""
  with open(os.path.join(fixtures_dir(), name, 'meta.json')) as f:
    options = json.load(f)['model_options']
  config = defaults.get_config()
  m = config.model
  variant = options['model_variant']
  m.backbone = variant + '_beta' if variant.startswith('resnet') and not variant.endswith(
      '_beta') and name.startswith('resnet50beta') else variant
  m.depth_multiplier = options['depth_multiplier']
  m.output_stride = options['output_stride']
  m.atrous_rates = tuple(options['atrous_rates'] or ())
  m.multi_grid = tuple(options['multi_grid']) if options['multi_grid'] else None
  m.decoder_output_stride = (options['decoder_output_stride'] or [None])[0]
  m.num_classes = options['outputs_to_num_classes']['semantic']
  if options['dense_prediction_cell_config']:
    m.dense_prediction_cell = os.path.join(fixtures_dir(),
                                           'dense_prediction_cell_branch5_top1_cityscapes.json')
  return config


def load(name, tf_checkpoint, golden='golden.npz', **overrides):
  config = fixture_config(name)
  for key, value in overrides.items():
    config.model[key] = value
  variables = deeplab_jax.import_tf_checkpoint(tf_checkpoint(name), config)
  data = np.load(os.path.join(fixtures_dir(), name, golden))
  return deeplab_jax.create_model(config), variables, data


def report(name, logits, golden_logits, predictions, golden_predictions):
  max_err = float(np.abs(logits - golden_logits).max())
  agreement = float((predictions == golden_predictions).mean())
  print(f'{name}: max |logits - golden| = {max_err:.2e}, pixel agreement = {agreement:.5%}')
  return max_err, agreement


SINGLE_SCALE = ['mnv2_voc_os16', 'mnv2_dm05_voc_os16', 'mnv2_dpc_small',
                'xception65_voc_os16', 'resnet50beta_voc_os16']


@pytest.mark.parametrize('name', SINGLE_SCALE)
def test_single_scale_logits_and_labels_match_original(name, tf_checkpoint):
  model, variables, data = load(name, tf_checkpoint)
  inputs = data['inputs']
  logits = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, inputs))
  labels = np.asarray(jax.jit(lambda v, x: deeplab_jax.predict_labels(model, v, x))(
      variables, inputs))
  assert logits.shape == data['logits'].shape
  max_err, agreement = report(name, logits, data['logits'], labels, data['predictions'])
  assert max_err < LOGITS_ATOL
  assert agreement >= MIN_AGREEMENT


def test_xception65_at_output_stride_8_matches_original(tf_checkpoint):
  model, variables, data = load('xception65_voc_os16', tf_checkpoint, golden='golden_os8.npz',
                                output_stride=8, atrous_rates=(12, 24, 36))
  inputs = np.load(os.path.join(fixtures_dir(), 'xception65_voc_os16', 'golden.npz'))['inputs']
  logits = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, inputs))
  labels = np.argmax(np.asarray(deeplab_jax.resize_bilinear(logits, inputs.shape[1:3])), -1)
  max_err, agreement = report('xception65 OS8', logits, data['logits'], labels,
                              data['predictions'])
  assert max_err < LOGITS_ATOL
  assert agreement >= MIN_AGREEMENT


def test_multiscale_flip_inference_matches_original(tf_checkpoint):
  scales = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
  model, variables, data = load('mnv2_voc_os16', tf_checkpoint, golden='multiscale_os8.npz',
                                output_stride=8)
  inputs = np.load(os.path.join(fixtures_dir(), 'mnv2_voc_os16', 'golden.npz'))['inputs']
  apply = jax.jit(lambda v, x, s: model.apply(v, x, train=False, image_pyramid=(s,)),
                  static_argnums=2)
  for scale in scales:
    for flipped in (False, True):
      key = f'logits_scale{scale:.2f}' + ('_flipped' if flipped else '')
      logits = np.asarray(apply(variables, inputs[:, :, ::-1] if flipped else inputs, scale))
      err = float(np.abs(logits - data[key]).max())
      print(f'{key}: max error {err:.2e}')
      assert err < LOGITS_ATOL, key
  labels = np.asarray(jax.jit(lambda v, x: deeplab_jax.predict_labels(
      model, v, x, scales=scales, flip=True))(variables, inputs))
  agreement = float((labels == data['predictions']).mean())
  print(f'multi-scale + flip: pixel agreement {agreement:.5%}')
  assert agreement >= MIN_AGREEMENT
