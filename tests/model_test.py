"""Shapes, parameter counts and config validation of the DeepLab models.

Everything here uses `jax.eval_shape`, so nothing is compiled or run.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import deeplab_jax
from deeplab_jax import config_defaults as defaults
from deeplab_jax import config_checks
from deeplab_jax.heads import dense_prediction_cell
import config_files


def zoo_config(name, **model_overrides):
  config = config_files.module(name).get_config()
  for key, value in model_overrides.items():
    config.model[key] = value
  return config


def abstract_variables(config, size=(65, 65)):
  model = deeplab_jax.create_model(config)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *size, 3))))


def trainable_count(variables):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))


# Trainable-parameter totals of the original graphs (21 classes; gamma/beta
# included, moving statistics excluded).
@pytest.mark.parametrize('name, overrides, expected', [
    ('voc_xception65', {}, 41_055_413),
    ('cityscapes_xception71_dpc', {'num_classes': 21}, 41_609_037),
    ('voc_resnet50_beta', {'backbone': 'resnet_v1_101_beta'}, 45_812_037),
    ('voc_mnv2', {}, 2_113_557),
    ('voc_mnv2_dm05', {}, 697_013),
])
def test_parameter_counts_equal_the_original(name, overrides, expected):
  assert trainable_count(abstract_variables(zoo_config(name, **overrides))) == expected


@pytest.mark.parametrize('name', ['voc_mnv2', 'voc_xception65', 'voc_resnet50_beta',
                                  'cityscapes_xception71_dpc'])
@pytest.mark.parametrize('output_stride', [8, 16, 32])
def test_logits_size_follows_the_crop_rule(name, output_stride):
  config = zoo_config(name, output_stride=output_stride)
  model = deeplab_jax.create_model(config)
  images = jnp.zeros((2, 129, 129, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
  logits = jax.eval_shape(lambda v: model.apply(v, images), variables)
  stride = config.model.decoder_output_stride or output_stride
  size = deeplab_jax.scale_dimension(129, 1 / stride)
  assert logits.shape == (2, size, size, config.model.num_classes)


def test_backbone_features_of_a_513_crop():
  # Appendix B: X65 OS16 at 513 gives 33x33x2048 features, 129x129x256 low-level.
  config = zoo_config('voc_xception65')
  backbone = deeplab_jax.backbones.create_backbone(config.model.backbone)
  images = jnp.zeros((1, 513, 513, 3))
  variables = jax.eval_shape(lambda: backbone.init(jax.random.key(0), images, False))
  features, low_level = jax.eval_shape(lambda v: backbone.apply(v, images, False), variables)
  assert features.shape == (1, 33, 33, 2048)
  assert low_level.shape == (1, 129, 129, 256)


def test_mobilenet_v2_uses_no_expand_conv_in_its_first_block():
  names = traverse_util.flatten_dict(abstract_variables(zoo_config('voc_mnv2')), sep='/')
  assert not any('MobilenetV2/expanded_conv/expand/' in n for n in names)
  assert 'params/MobilenetV2/expanded_conv_1/expand/weights' in names
  assert not any('Conv_1' in n for n in names)  # layer_19 is not built.


def _conv_moving_mean(variables):
  return variables['batch_stats']['MobilenetV2']['Conv']['BatchNorm']['moving_mean']


@pytest.mark.parametrize('fine_tune_batch_norm', [True, False])
def test_batch_stats_move_only_when_training_with_batch_norm_fine_tuning(fine_tune_batch_norm):
  config = defaults.apply_variant(zoo_config('voc_mnv2'), 'tiny')
  config.fine_tune_batch_norm = fine_tune_batch_norm
  model = deeplab_jax.create_model(config)
  images = jax.random.uniform(jax.random.key(1), (2, 65, 65, 3)) * 255
  variables = model.init(jax.random.key(0), images)
  _, updated = model.apply(variables, images, train=True, mutable=['batch_stats'],
                           rngs={'dropout': jax.random.key(2)})
  moved = not np.allclose(_conv_moving_mean(variables), _conv_moving_mean(updated))
  assert moved == fine_tune_batch_norm


def test_image_pooling_window_larger_than_the_features_pools_them_all():
  # A model trained on 129 crops with image_pooling_crop_size=129 still builds
  # and predicts on smaller inputs (initialisation uses one, as do tiny images).
  config = defaults.apply_variant(zoo_config('voc_mnv2'), 'tiny')
  images = jax.random.uniform(jax.random.key(1), (1, 65, 65, 3)) * 255
  model = deeplab_jax.create_model(config)
  variables = model.init(jax.random.key(0), images)
  config.model.image_pooling_crop_size = (129, 129)
  windowed = deeplab_jax.create_model(config)
  # Freshly initialised logits are tiny (~1e-9): compare relative to their size.
  small_windowed, small_global = windowed.apply(variables, images), model.apply(variables, images)
  np.testing.assert_allclose(small_windowed, small_global, rtol=1e-4,
                             atol=1e-4 * np.abs(small_global).max())
  # On a larger input the window slides, and predictions differ from the global mean's.
  large = jax.random.uniform(jax.random.key(2), (1, 161, 161, 3)) * 255
  large_windowed, large_global = windowed.apply(variables, large), model.apply(variables, large)
  assert np.abs(large_windowed - large_global).max() > 1e-2 * np.abs(large_global).max()


@pytest.mark.parametrize('field, value, message', [
    ('backbone', 'vgg16', 'config.model.backbone'),
    ('output_stride', 4, 'config.model.output_stride'),
    ('decoder_output_stride', 16, 'decoder_output_stride'),
])
def test_invalid_model_config_says_which_field(field, value, message):
  config = zoo_config('voc_mnv2')
  config.model[field] = value
  with pytest.raises(ValueError, match=message):
    abstract_variables(config)


def test_dense_prediction_cell_rejects_a_missing_file():
  config = zoo_config('cityscapes_xception71_dpc', dense_prediction_cell='/nonexistent/cell.json')
  with pytest.raises(FileNotFoundError, match='cell.json'):
    abstract_variables(config)


def test_an_empty_cell_flag_builds_aspp():
  # `--config.model.dense_prediction_cell=` turns a config's cell off.
  config = zoo_config('cityscapes_xception71_dpc', dense_prediction_cell='',
                      atrous_rates=(6, 12, 18))
  config_checks.check_model(config)
  params = abstract_variables(config)['params']
  assert 'meta_architecture' not in params
  assert {'aspp0', 'image_pooling', 'concat_projection'} <= set(params)
  assert any(name.startswith('aspp3') for name in params)  # The third atrous branch.


def test_the_cell_file_is_read_once_when_the_model_is_created(tmp_path):
  # The module is a pure function of its fields: tracing it reads no file.
  shipped = dense_prediction_cell.load_cell_config('cityscapes')
  cell = tmp_path / 'cell.json'
  cell.write_text(json.dumps([dataclasses.asdict(b) for b in shipped]))
  config = zoo_config('cityscapes_xception71_dpc', dense_prediction_cell=str(cell))
  model = deeplab_jax.create_model(config)
  assert model.dense_prediction_cell == shipped
  hash(model)  # jit takes it as a static argument.
  cell.unlink()
  images = jnp.zeros((1, 65, 65, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
  assert 'meta_architecture' in variables['params']


def test_bfloat16_compute_stays_close_to_float32():
  # Judged on a freshly initialised model: the golden fixtures' calibrated
  # random networks are chaotic (0.04% input noise moves their logits 20%).
  config = zoo_config('voc_mnv2', num_classes=5)
  images = jax.random.uniform(jax.random.key(1), (2, 97, 97, 3)) * 255
  model = deeplab_jax.create_model(config)
  variables = jax.jit(model.init)(jax.random.key(0), images)
  config.model.dtype = 'bfloat16'
  half = deeplab_jax.create_model(config)
  assert jax.tree.all(jax.tree.map(lambda a, b: a.dtype == b.dtype == jnp.float32, variables,
                                   jax.eval_shape(half.init, jax.random.key(0), images)))
  full_logits = jax.jit(model.apply)(variables, images)
  half_logits = jax.jit(half.apply)(variables, images)
  relative_rms = jnp.sqrt(jnp.mean((half_logits - full_logits) ** 2)) / jnp.std(full_logits)
  assert relative_rms < 0.05


def test_argmax_classes_equals_jnp_argmax_with_ties_to_the_first():
  scores = jax.random.normal(jax.random.key(0), (2, 7, 9, 21))
  scores = scores.at[0, 0, 0, 5].set(9.0).at[0, 0, 0, 11].set(9.0)  # A tie.
  labels = deeplab_jax.scoring.argmax_classes(scores)
  assert labels.dtype == jnp.int32
  np.testing.assert_array_equal(labels, jnp.argmax(scores, axis=-1))
  assert labels[0, 0, 0] == 5


# The last batch norm of every residual branch, by backbone: MobileNetV2's
# stride-1 blocks that keep their width (10 of 17), every ResNet bottleneck,
# and the Xception modules with a skip (not exit_flow/block2).
@pytest.mark.parametrize('backbone, last_bn, count', [
    ('mobilenet_v2', '/project/BatchNorm/gamma', 10),
    ('resnet_v1_50_beta', '/conv3/BatchNorm/gamma', 16),
    ('xception_41', '/separable_conv3_pointwise/BatchNorm/gamma', 12),
])
def test_zero_init_residual_zeroes_the_last_batch_norm_of_each_residual_branch(
    backbone, last_bn, count):
  from deeplab_jax import variables as variables_lib  # pylint: disable=g-import-not-at-top
  config = zoo_config('voc_mnv2', backbone=backbone, decoder_output_stride=4)
  default = traverse_util.flatten_dict(variables_lib.initial_variables(config, 0), sep='/')
  config.model.zero_init_residual = True
  zeroed = traverse_util.flatten_dict(variables_lib.initial_variables(config, 0), sep='/')
  assert all(np.all(v == 1) for n, v in default.items() if n.endswith('/gamma'))
  zero_names = sorted(n for n, v in zeroed.items() if n.endswith('/gamma') and not np.any(v))
  assert len(zero_names) == count and all(n.endswith(last_bn) for n in zero_names)
  if backbone == 'xception_41':
    assert not any('exit_flow/block2' in n for n in zero_names)
  # Everything else starts as before, and the device initialisers agree.
  for name, value in zeroed.items():
    if name not in zero_names:
      np.testing.assert_array_equal(value, default[name], err_msg=name)
  if backbone == 'mobilenet_v2':
    model = deeplab_jax.create_model(config)
    device = traverse_util.flatten_dict(jax.jit(
        lambda key: model.init(key, jnp.zeros((1, 33, 33, 3))))(jax.random.key(0)), sep='/')
    assert sorted(n for n, v in device.items()
                  if n.endswith('/gamma') and not np.any(v)) == zero_names


def test_zero_init_residual_mobilenet_v2_blocks_start_as_the_identity():
  from deeplab_jax import variables as variables_lib  # pylint: disable=g-import-not-at-top
  config = zoo_config('voc_mnv2', zero_init_residual=True)
  images = jax.random.uniform(jax.random.key(1), (1, 65, 65, 3)) * 255

  def block_outputs():
    _, state = deeplab_jax.create_model(config).apply(
        variables_lib.initial_variables(config, 0), images, capture_intermediates=True,
        mutable=['intermediates'])
    return state['intermediates']['MobilenetV2']

  outputs = block_outputs()
  # expanded_conv_2 (the 24-channel group's second unit) and _5 (the 32-channel
  # group's third) are residual: their outputs equal their inputs.
  for block, previous in (('expanded_conv_2', 'expanded_conv_1'),
                          ('expanded_conv_5', 'expanded_conv_4')):
    np.testing.assert_array_equal(outputs[block]['__call__'][0][0],
                                  outputs[previous]['__call__'][0][0])
  # Without the option a residual block changes its input.
  config.model.zero_init_residual = False
  outputs = block_outputs()
  assert not np.allclose(outputs['expanded_conv_2']['__call__'][0][0],
                         outputs['expanded_conv_1']['__call__'][0][0])
