"""Xception-41/65/71 backbones: checkpoint names, sizes, atrous rule, parity."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import deeplab_jax
from deeplab_jax import config_defaults as defaults
from conftest import fixtures_dir
from deeplab_jax.backbones.xception import Xception
from deeplab_jax.layers import fastest_kernels

# With the kernels create_model picks for this backend: the tests run what the model runs.
Xception = functools.partial(Xception, kernels=fastest_kernels(jax.default_backend()))

FIXTURE = 'xception65_voc_os16'
LOW_LEVEL_KEY = ('decoder_low_level/xception_65/entry_flow/block2/unit_1/xception_module/'
                 'separable_conv2_pointwise')


def flat_shapes(variables, scope):
  """{TF variable name: shape} of a backbone's Flax variables (all collections)."""
  return {f'{scope}/' + '/'.join(path[1:]): list(leaf.shape)
          for path, leaf in traverse_util.flatten_dict(variables).items()}


def abstract_init(module, size=33):
  """(variable shapes, output shapes) without computing anything."""
  x = jnp.zeros((1, size, size, 3))
  outputs, variables = jax.eval_shape(
      lambda: module.init_with_output(jax.random.key(0), x, train=False))
  return variables, outputs


def fixture_variables(name, scope):
  with open(os.path.join(fixtures_dir(), name, 'variables.json')) as f:
    return {n: shape for n, shape, _ in json.load(f) if n.startswith(scope + '/')}


def load_backbone(prefix, module, scope):
  """The backbone's variables read from a TF checkpoint by name."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (slow import)
  reader = tf.train.load_checkpoint(prefix)
  template, _ = abstract_init(module)
  flat = traverse_util.flatten_dict(template)
  return traverse_util.unflatten_dict(
      {path: reader.get_tensor(f'{scope}/' + '/'.join(path[1:])) for path in flat})


def test_variables_equal_the_checkpoint_names_and_shapes():
  variables, _ = abstract_init(Xception('xception_65', 16, name='xception_65'))
  ours = flat_shapes(variables, 'xception_65')
  theirs = fixture_variables(FIXTURE, 'xception_65')
  assert sorted(set(ours) - set(theirs)) == []
  assert sorted(set(theirs) - set(ours)) == []
  assert ours == theirs


def test_trainable_parameters_equal_the_checkpoint():
  variables, _ = abstract_init(Xception('xception_65', 16))
  ours = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables['params']))
  theirs = sum(int(np.prod(shape)) for name, shape in fixture_variables(FIXTURE, 'xception_65')
               .items() if not name.endswith(('moving_mean', 'moving_variance')))
  assert ours == theirs


@pytest.mark.parametrize('backbone, head, total', [
    ('xception_65', dict(atrous_rates=(6, 12, 18)), 41_055_413),
    ('xception_71', dict(dense_prediction_cell='cityscapes'), 41_609_037),
])
def test_whole_model_parameter_counts_match_the_original(backbone, head, total):
  config = defaults.get_config()
  config.model.backbone = backbone
  config.model.decoder_output_stride = 4
  config.model.update(head)
  model = deeplab_jax.create_model(config)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 65, 65, 3)),
                                                train=False))
  assert sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables['params'])) == total


def test_variant_structure():
  x41, _ = abstract_init(Xception('xception_41', 16))
  x71, _ = abstract_init(Xception('xception_71', 16))
  middle41 = {k for k in x41['params'] if k.startswith('middle_flow/')}
  entry71 = sorted(k for k in x71['params'] if k.startswith('entry_flow/block'))
  assert len(middle41) == 8
  assert entry71 == [f'entry_flow/block{b}/unit_1/xception_module' for b in range(1, 6)]
  # X71's block2 keeps stride 1, so no shortcut subsampling is needed there.
  assert x71['params']['entry_flow/block4/unit_1/xception_module']['shortcut']['weights'].shape \
      == (1, 1, 256, 728)


@pytest.mark.parametrize('variant', ['xception_41', 'xception_65', 'xception_71'])
@pytest.mark.parametrize('output_stride, size, expected', [
    (8, 129, 17), (16, 129, 9), (32, 129, 5), (16, 65, 5), (8, 65, 9), (32, 65, 3)])
def test_output_sizes(variant, output_stride, size, expected):
  _, (features, low_level) = abstract_init(Xception(variant, output_stride), size)
  assert features.shape == (1, expected, expected, 2048)
  low = (size - 1) // 4 + 1
  assert low_level.shape == (1, low, low, 256)


def random_variables(module, seed):
  """Random weights and moving statistics (numpy: no compilation per shape)."""
  template, _ = abstract_init(module)
  rng = np.random.RandomState(seed)
  values = {}
  for path, leaf in traverse_util.flatten_dict(template).items():
    shape = leaf.shape
    if path[-1] in ('weights', 'depthwise_weights'):
      fan_in = np.prod(shape[:-1]) if path[-1] == 'weights' else np.prod(shape[:2])
      values[path] = rng.normal(size=shape) / np.sqrt(fan_in)
    elif path[-1] in ('gamma', 'moving_variance'):
      values[path] = rng.uniform(0.5, 1.5, size=shape)
    else:
      values[path] = 0.2 * rng.normal(size=shape)
    values[path] = values[path].astype(np.float32)
  return traverse_util.unflatten_dict(values)


def training_forward(module):
  """Compiled (variables, x) -> (features, low-level, updated batch_stats)."""
  def forward(variables, x):
    (features, low), updates = module.apply(variables, x, train=True, mutable=['batch_stats'])
    return features, low, updates['batch_stats']
  return jax.jit(forward)


@pytest.fixture(scope='module')
def random_xception41():
  return random_variables(Xception('xception_41', 16, multi_grid=(1, 2, 4)), seed=1)


def test_atrous_outputs_are_the_strided_outputs_densified(random_xception41):
  # With the original atrous rule (the unit whose stride is removed keeps the
  # old rate; later ones are dilated), every OS8 map sampled at even
  # positions is exactly the OS16 map, and OS16 at even positions is OS32.
  x = jax.random.uniform(jax.random.key(3), (1, 49, 49, 3), minval=-1, maxval=1)
  outputs = {}
  for output_stride in (8, 16, 32):
    module = Xception('xception_41', output_stride, multi_grid=(1, 2, 4))
    outputs[output_stride] = jax.jit(lambda v, x, m=module: m.apply(v, x, train=False))(
        random_xception41, x)
  scale = float(jnp.abs(outputs[16][0]).max())
  assert [outputs[s][0].shape[1] for s in (8, 16, 32)] == [7, 4, 2]
  np.testing.assert_allclose(outputs[8][0][:, ::2, ::2], outputs[16][0], atol=1e-4 * scale)
  np.testing.assert_allclose(outputs[16][0][:, ::2, ::2], outputs[32][0], atol=1e-4 * scale)
  np.testing.assert_allclose(outputs[8][1], outputs[32][1], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope='module')
def training_run(random_xception41):
  x = jax.random.uniform(jax.random.key(4), (2, 33, 33, 3), minval=-1, maxval=1)
  forward = training_forward(Xception('xception_41', 16, multi_grid=(1, 2, 4)))
  return forward, x, forward(random_xception41, x)


def test_training_mode_uses_batch_statistics_and_updates_them(random_xception41, training_run):
  forward, x, (features, _, new_a) = training_run
  stats_a = random_xception41['batch_stats']
  stats_b = jax.tree.map(lambda s: s + 0.25, stats_a)
  features_b, _, new_b = forward(dict(random_xception41, batch_stats=stats_b), x)
  # Training normalises with batch moments: the moving statistics do not matter.
  np.testing.assert_allclose(features, features_b, rtol=1e-5, atol=1e-5)
  # Every moving statistic moved, by TF's rule new = decay·old + (1−decay)·batch,
  # so the difference between the two runs shrinks by exactly `decay`.
  for a, b, old in zip(jax.tree.leaves(new_a), jax.tree.leaves(new_b), jax.tree.leaves(stats_a)):
    assert np.abs(np.asarray(a - old)).max() > 0
    np.testing.assert_allclose(b - a, 0.9997 * 0.25, rtol=1e-5)


def test_remat_changes_nothing(random_xception41, training_run):
  _, x, (features, low, stats) = training_run
  module = Xception('xception_41', 16, multi_grid=(1, 2, 4), remat=True)
  remat_features, remat_low, remat_stats = training_forward(module)(random_xception41, x)
  np.testing.assert_allclose(remat_features, features, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(remat_low, low, rtol=1e-6, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), remat_stats, stats)

  # Differentiating through the rematerialised units traces (no compile needed).
  def loss(params):
    (out, _), _ = module.apply(dict(random_xception41, params=params), x, train=True,
                               mutable=['batch_stats'])
    return jnp.mean(out ** 2)

  grads = jax.eval_shape(jax.grad(loss), random_xception41['params'])
  assert jax.tree.structure(grads) == jax.tree.structure(random_xception41['params'])


@pytest.mark.parametrize('kwargs, message', [
    (dict(variant='xception_66', output_stride=16), 'xception_66'),
    (dict(variant='xception_65', output_stride=4), 'output_stride=4'),
    (dict(variant='xception_65', output_stride=16, multi_grid=(1, 2)), 'multi_grid'),
])
def test_bad_settings_raise_clear_errors(kwargs, message):
  with pytest.raises(ValueError, match=message):
    abstract_init(Xception(**kwargs))


def test_matches_the_original_backbone_on_the_golden_image(tf_checkpoint):
  module = Xception('xception_65', 16, name='xception_65')
  variables = load_backbone(tf_checkpoint(FIXTURE), module, 'xception_65')
  inputs = np.load(os.path.join(fixtures_dir(), FIXTURE, 'golden.npz'))['inputs'][:1]
  debug = np.load(os.path.join(fixtures_dir(), FIXTURE, 'debug.npz'))
  features, low_level = jax.jit(lambda v, x: module.apply(v, x, train=False))(
      variables, (2.0 / 255.0) * inputs - 1.0)
  for name, ours, theirs in [('backbone_features', features, debug['backbone_features']),
                             ('low-level', low_level, debug[LOW_LEVEL_KEY])]:
    theirs = theirs.astype(np.float32)
    assert ours.shape == theirs.shape
    err = float(np.abs(np.asarray(ours) - theirs).max())
    scale = float(np.abs(theirs).max())
    print(f'xception_65 {name}: max abs error {err:.2e} (max |value| {scale:.2f})')
    # The golden values are float16, whose rounding alone is up to 2**-8 at 8..16.
    assert err < 1e-3 * scale
