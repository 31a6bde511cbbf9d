"""ResNet-v1-50/101-beta backbones: checkpoint names, sizes, atrous rule, BN.

End-to-end parity with the original (`resnet50beta_voc_os16`) is in
parity_test.py: that fixture has no backbone-level intermediates.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeplab_jax
from deeplab_jax import config_defaults as defaults
from deeplab_jax.backbones.resnet import ResNetV1Beta
from xception_test import abstract_init, fixture_variables, flat_shapes, random_variables
from xception_test import training_forward
from deeplab_jax.layers import fastest_kernels

# With the kernels create_model picks for this backend: the tests run what the model runs.
ResNetV1Beta = functools.partial(ResNetV1Beta, kernels=fastest_kernels(jax.default_backend()))

FIXTURE = 'resnet50beta_voc_os16'
MULTI_GRID = (1, 2, 4)


def test_variables_equal_the_checkpoint_names_and_shapes():
  variables, _ = abstract_init(ResNetV1Beta('resnet_v1_50_beta', 16, MULTI_GRID))
  ours = flat_shapes(variables, 'resnet_v1_50')
  theirs = fixture_variables(FIXTURE, 'resnet_v1_50')
  assert sorted(set(ours) - set(theirs)) == []
  assert sorted(set(theirs) - set(ours)) == []
  assert ours == theirs


def test_trainable_parameters_equal_the_checkpoint():
  variables, _ = abstract_init(ResNetV1Beta('resnet_v1_50_beta', 16, MULTI_GRID))
  ours = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables['params']))
  theirs = sum(int(np.prod(shape)) for name, shape in fixture_variables(FIXTURE, 'resnet_v1_50')
               .items() if not name.endswith(('moving_mean', 'moving_variance')))
  assert ours == theirs


def test_resnet101_model_parameter_count_matches_the_original():
  config = defaults.get_config()
  config.model.update(backbone='resnet_v1_101_beta', atrous_rates=(6, 12, 18),
                      multi_grid=MULTI_GRID, decoder_output_stride=4)
  model = deeplab_jax.create_model(config)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 65, 65, 3)),
                                                train=False))
  assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables['params'])) == 45_812_037


def test_unit_layout():
  variables, _ = abstract_init(ResNetV1Beta('resnet_v1_101_beta', 16, MULTI_GRID))
  units = {}
  for name in variables['params']:
    if name.startswith('block'):
      block, unit, _ = name.split('/')
      units.setdefault(block, []).append(unit)
  assert {b: len(u) for b, u in units.items()} == {'block1': 3, 'block2': 4, 'block3': 23,
                                                   'block4': 3}
  # Only each block's first unit changes the depth, so only it has a shortcut conv.
  with_shortcut = sorted(n for n, v in variables['params'].items() if 'shortcut' in v)
  assert with_shortcut == [f'block{b}/unit_1/bottleneck_v1' for b in range(1, 5)]
  # block4 has one unit per multi-grid rate.
  variables, _ = abstract_init(ResNetV1Beta('resnet_v1_50_beta', 16, (1, 2)))
  assert sum(n.startswith('block4/') for n in variables['params']) == 2


@pytest.mark.parametrize('variant', ['resnet_v1_50_beta', 'resnet_v1_101_beta'])
@pytest.mark.parametrize('output_stride, size, expected', [
    (8, 129, 17), (16, 129, 9), (32, 129, 5), (16, 65, 5), (8, 65, 9), (32, 65, 3)])
def test_output_sizes(variant, output_stride, size, expected):
  _, (features, low_level) = abstract_init(ResNetV1Beta(variant, output_stride, MULTI_GRID),
                                           size)
  assert features.shape == (1, expected, expected, 2048)
  low = (size - 1) // 4 + 1
  assert low_level.shape == (1, low, low, 256)


@pytest.fixture(scope='module')
def random_resnet50():
  return random_variables(ResNetV1Beta('resnet_v1_50_beta', 16, MULTI_GRID), seed=7)


def test_atrous_outputs_are_the_strided_outputs_densified(random_resnet50):
  # The original atrous rule makes every OS8 map, sampled at even positions,
  # exactly the OS16 map (and OS16 → OS32 likewise).
  x = jax.random.uniform(jax.random.key(3), (1, 49, 49, 3), minval=-1, maxval=1)
  outputs = {}
  for output_stride in (8, 16, 32):
    module = ResNetV1Beta('resnet_v1_50_beta', output_stride, MULTI_GRID)
    outputs[output_stride] = jax.jit(lambda v, x, m=module: m.apply(v, x, train=False))(
        random_resnet50, x)
  scale = float(jnp.abs(outputs[16][0]).max())
  assert [outputs[s][0].shape[1] for s in (8, 16, 32)] == [7, 4, 2]
  np.testing.assert_allclose(outputs[8][0][:, ::2, ::2], outputs[16][0], atol=1e-4 * scale)
  np.testing.assert_allclose(outputs[16][0][:, ::2, ::2], outputs[32][0], atol=1e-4 * scale)
  assert outputs[8][1].shape == (1, 13, 13, 256)
  np.testing.assert_allclose(outputs[8][1], outputs[32][1], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope='module')
def training_run(random_resnet50):
  x = jax.random.uniform(jax.random.key(4), (2, 33, 33, 3), minval=-1, maxval=1)
  forward = training_forward(ResNetV1Beta('resnet_v1_50_beta', 16, MULTI_GRID))
  return forward, x, forward(random_resnet50, x)


def test_training_mode_uses_batch_statistics_and_updates_them(random_resnet50, training_run):
  forward, x, (features, _, new_a) = training_run
  stats_a = random_resnet50['batch_stats']
  stats_b = jax.tree.map(lambda s: s + 0.25, stats_a)
  features_b, _, new_b = forward(dict(random_resnet50, batch_stats=stats_b), x)
  np.testing.assert_allclose(features, features_b, rtol=1e-5, atol=1e-5)
  # ResNet's batch-norm decay is 0.95 (not the head's 0.9997).
  for a, b, old in zip(jax.tree.leaves(new_a), jax.tree.leaves(new_b), jax.tree.leaves(stats_a)):
    assert np.abs(np.asarray(a - old)).max() > 0
    np.testing.assert_allclose(b - a, 0.95 * 0.25, rtol=1e-5)


def test_remat_changes_nothing(random_resnet50, training_run):
  _, x, expected = training_run
  module = ResNetV1Beta('resnet_v1_50_beta', 16, MULTI_GRID, remat=True)
  actual = training_forward(module)(random_resnet50, x)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
               actual, expected)

  def loss(params):
    (out, _), _ = module.apply(dict(random_resnet50, params=params), x, train=True,
                               mutable=['batch_stats'])
    return jnp.mean(out ** 2)

  grads = jax.eval_shape(jax.grad(loss), random_resnet50['params'])
  assert jax.tree.structure(grads) == jax.tree.structure(random_resnet50['params'])


@pytest.mark.parametrize('kwargs, message', [
    (dict(variant='resnet_v1_50', output_stride=16), 'resnet_v1_50'),
    (dict(variant='resnet_v1_101_beta', output_stride=64), 'output_stride=64'),
    (dict(variant='resnet_v1_50_beta', output_stride=16, multi_grid=()), 'multi_grid'),
])
def test_bad_settings_raise_clear_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    abstract_init(ResNetV1Beta(**kwargs))
