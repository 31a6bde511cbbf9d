"""Depthwise convolution implementations and batch-norm folding (layers.py).

Every depthwise implementation must equal XLA's grouped convolution (the
definition), values and gradients, for the strides, rates, paddings and odd
or even sizes DeepLab uses; folding BN into a kernel must equal applying BN.
"""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np
import pytest

from deeplab_jax import layers

IMPLEMENTATIONS = layers.DEPTHWISE_KERNELS


def grouped_conv(x, kernel, stride, rate, padding):
  """The reference: lax.conv with one group per channel."""
  kh, kw, channels, _ = kernel.shape
  return lax.conv_general_dilated(
      x, kernel.reshape(kh, kw, 1, channels), stride, padding, rhs_dilation=rate,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=channels,
      precision=lax.Precision.HIGHEST)


def random_inputs(size, channels=5, batch=2, seed=0):
  kx, kk = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, (batch, *size, channels), jnp.float32)
  kernel = jax.random.normal(kk, (3, 3, channels, 1), jnp.float32)
  return x, kernel


CASES = [
    # (input size, stride, rate, padding mode)
    *itertools.product([(9, 9), (8, 8), (9, 12)], [1, 2], [1, 2], ['SAME']),
    # FIXED differs from SAME only for strided convs.
    *itertools.product([(9, 9), (8, 8), (9, 12)], [2], [1, 2], ['FIXED']),
    ((11, 10), 1, (1, 2), 'SAME'),
    ((10, 13), 1, (2, 3), 'SAME'),
    ((13, 11), (2, 1), 1, 'FIXED'),
    ((7, 7), 1, 4, 'SAME'),  # Rate larger than half the input: mostly padding.
]


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
@pytest.mark.parametrize('size, stride, rate, mode', CASES)
def test_depthwise_equals_grouped_conv(implementation, size, stride, rate, mode):
  x, kernel = random_inputs(size)
  stride, rate = layers._pair(stride), layers._pair(rate)
  padding = layers.resolve_padding(mode, x.shape, (3, 3), stride, rate)
  expected = grouped_conv(x, kernel, stride, rate, padding)
  actual = layers.depthwise_conv(x, kernel, stride, rate, padding, implementation=implementation)
  assert actual.shape == expected.shape
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


# 'conv' is the reference itself; the shifted sum has a hand-written VJP.
# Its kernel gradient loops over blocks of output rows (here batch 2): eight
# rows per block by default (often all of them), one row per block, or three
# with a last block that overhangs.
@pytest.mark.parametrize('size, stride, rate, mode, terms_per_step', [
    *[(*case, layers._TERMS_PER_STEP) for case in CASES],
    *[(*case, terms) for case in CASES[::4] for terms in (1, 6)]])
def test_shifted_depthwise_gradients_equal_grouped_conv(monkeypatch, size, stride, rate, mode,
                                                        terms_per_step):
  monkeypatch.setattr(layers, '_TERMS_PER_STEP', terms_per_step)
  x, kernel = random_inputs(size, seed=1)
  stride, rate = layers._pair(stride), layers._pair(rate)
  padding = layers.resolve_padding(mode, x.shape, (3, 3), stride, rate)
  out_shape = grouped_conv(x, kernel, stride, rate, padding).shape
  weights = jax.random.normal(jax.random.key(2), out_shape)

  def loss(conv):
    return lambda x, k: jnp.sum(conv(x, k, stride, rate, padding) * weights)

  expected = jax.grad(loss(grouped_conv), argnums=(0, 1))(x, kernel)
  shifted = functools.partial(layers.depthwise_conv, implementation='shifted')
  actual = jax.grad(loss(shifted), argnums=(0, 1))(x, kernel)
  for got, want, what in zip(actual, expected, ('input', 'kernel')):
    assert got.shape == want.shape, what
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=what)


def test_shifted_depthwise_under_jit_and_vmap():
  x, kernel = random_inputs((10, 10))
  padding = layers.resolve_padding('SAME', x.shape, (3, 3), (2, 2), (1, 1))
  expected = grouped_conv(x, kernel, (2, 2), (1, 1), padding)
  jitted = jax.jit(lambda x, k: layers.depthwise_conv(x, k, (2, 2), (1, 1), padding,
                                                     implementation='shifted'))
  np.testing.assert_allclose(jitted(x, kernel), expected, rtol=1e-5, atol=1e-5)


def test_depthwise_keeps_the_accumulation_dtype():
  x, kernel = random_inputs((8, 8))
  padding = layers.resolve_padding('SAME', x.shape, (3, 3), (1, 1), (1, 1))
  y = layers.depthwise_conv(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), (1, 1),
                            (1, 1), padding, jnp.float32, implementation='shifted')
  assert y.dtype == jnp.float32


def test_unknown_kernel_choice_is_named():
  with pytest.raises(ValueError, match='Kernels.depthwise=.winograd.'):
    layers.Kernels(depthwise='winograd')
  with pytest.raises(ValueError, match='Kernels.pointwise=.gemm.'):
    layers.Kernels(pointwise='gemm')
  x, kernel = random_inputs((5, 5))
  with pytest.raises(ValueError, match='implementation=.winograd.'):
    layers.depthwise_conv(x, kernel, (1, 1), (1, 1), ((1, 1), (1, 1)), implementation='winograd')


def randomised_batch_norm(variables, seed=3):
  """Non-trivial gamma, beta and moving statistics for every BatchNorm."""
  keys = iter(jax.random.split(jax.random.key(seed), 16))

  def perturb(path, value):
    name = path[-1].key
    if name == 'gamma':
      return jax.random.uniform(next(keys), value.shape, minval=0.5, maxval=1.5)
    if name in ('beta', 'moving_mean'):
      return jax.random.normal(next(keys), value.shape)
    if name == 'moving_variance':
      return jax.random.uniform(next(keys), value.shape, minval=0.2, maxval=2.0)
    return value

  return jax.tree_util.tree_map_with_path(perturb, variables)


@pytest.mark.parametrize('implementation', IMPLEMENTATIONS)
@pytest.mark.parametrize('depthwise, stride, rate', [
    (True, 1, 1), (True, 2, 1), (True, 1, 2), (False, 1, 1), (False, 2, 1), (False, 1, 2)])
def test_folded_batch_norm_equals_batch_norm(implementation, depthwise, stride, rate):
  settings = layers.BatchNormSettings(decay=0.997, epsilon=1e-3)
  module = layers.ConvBN(None if depthwise else 7, settings, kernel_size=3, stride=stride,
                         rate=rate, depthwise=depthwise, activation=nn.relu6,
                         kernels=layers.Kernels(depthwise=implementation))
  x = 3.0 * jax.random.normal(jax.random.key(4), (2, 11, 11, 6))
  variables = randomised_batch_norm(module.init(jax.random.key(5), x))
  folded = module.apply(variables, x, train=False)

  # Unfolded: the convolution with the raw kernel, then BN with moving stats.
  params, stats = variables['params'], variables['batch_stats']['BatchNorm']
  kernel = params['depthwise_weights' if depthwise else 'weights']
  stride2, rate2 = layers._pair(stride), layers._pair(rate)
  padding = layers.resolve_padding('SAME', x.shape, (3, 3), stride2, rate2)
  if depthwise:
    y = grouped_conv(x, kernel, stride2, rate2, padding)
  else:
    y = lax.conv_general_dilated(x, kernel, stride2, padding, rhs_dilation=rate2,
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                 precision=lax.Precision.HIGHEST)
  bn = params['BatchNorm']
  y = (y - stats['moving_mean']) / jnp.sqrt(stats['moving_variance'] + 1e-3)
  expected = jnp.clip(y * bn['gamma'] + bn['beta'], 0.0, 6.0)
  assert folded.shape == expected.shape
  np.testing.assert_allclose(folded, expected, rtol=1e-4, atol=1e-4)


def test_shifted_depthwise_gradient_of_a_replicated_kernel_under_shard_map():
  # The train step differentiates a replicated kernel applied to a per-device batch.
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ('data',))
  P = jax.sharding.PartitionSpec
  x, kernel = random_inputs((9, 9))
  padding = layers.resolve_padding('SAME', x.shape, (3, 3), (1, 1), (2, 2))

  def loss(kernel, x):
    y = layers.depthwise_conv(x, kernel, (1, 1), (2, 2), padding, implementation='shifted')
    return lax.psum(jnp.sum(y * y), 'data')

  sharded = jax.jit(jax.shard_map(jax.grad(loss), mesh=mesh, in_specs=(P(), P('data')),
                                  out_specs=P()))
  expected = jax.grad(lambda k: jnp.sum(grouped_conv(x, k, (1, 1), (2, 2), padding) ** 2))(kernel)
  np.testing.assert_allclose(sharded(kernel, x), expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('stride', [1, 2])
def test_pointwise_matmul_equals_the_1x1_conv_with_gradients(stride):
  module = layers.ConvBN(7, layers.BatchNormSettings(decay=0.9, epsilon=1e-3), stride=stride,
                         activation=nn.relu6)
  x = jax.random.normal(jax.random.key(6), (2, 9, 11, 5))
  variables = randomised_batch_norm(module.init(jax.random.key(7), x))

  def run(choice):
    chosen = module.clone(kernels=layers.Kernels(pointwise=choice))
    inference = chosen.apply(variables, x, train=False)
    loss = lambda p: jnp.sum(chosen.apply({**variables, 'params': p}, x, train=True,
                                          mutable=['batch_stats'])[0] ** 2)
    return inference, jax.grad(loss)(variables['params'])

  (matmul_y, matmul_grads), (conv_y, conv_grads) = run('matmul'), run('conv')
  assert matmul_y.shape == (2, -(-9 // stride), -(-11 // stride), 7)
  np.testing.assert_allclose(matmul_y, conv_y, rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(matmul_grads), jax.tree.leaves(conv_grads)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_default_kernels_trace_plain_convolutions():
  # What export relies on: TFLite rejects the matmul form of a 1x1 conv.
  def primitives(kernels):
    module = nn.Sequential([
        layers.ConvBN(None, layers.BatchNormSettings(0.9, 1e-3), kernel_size=3, depthwise=True,
                      kernels=kernels),
        layers.ConvBN(4, layers.BatchNormSettings(0.9, 1e-3), kernels=kernels)])
    x = jnp.ones((1, 5, 5, 3))
    variables = module.init(jax.random.key(0), x)
    return {eqn.primitive.name for eqn in jax.make_jaxpr(
        lambda v: module.apply(v, x))(variables).jaxpr.eqns}

  portable = primitives(layers.Kernels())
  assert 'dot_general' not in portable and 'conv_general_dilated' in portable
  fastest_on_cpu = primitives(layers.fastest_kernels('cpu'))
  assert 'dot_general' in fastest_on_cpu and 'conv_general_dilated' not in fastest_on_cpu


def test_create_model_resolves_the_kernel_choice_into_a_field():
  from deeplab_jax import config_defaults as defaults  # pylint: disable=g-import-not-at-top
  from deeplab_jax.model import create_model  # pylint: disable=g-import-not-at-top
  config = defaults.get_config()
  auto = create_model(config)
  assert auto.kernels == layers.fastest_kernels(jax.default_backend())
  config.model.depthwise_kernel = 'conv'
  config.model.pointwise_kernel = 'conv'
  plain = create_model(config)
  assert plain.kernels == layers.Kernels()
  # jit's cache of static arguments tells the two models apart.
  assert auto.kernels != plain.kernels and auto != plain and hash(auto) != hash(plain)
  config.model.pointwise_kernel = 'gemm'
  with pytest.raises(ValueError, match=r"config\.model\.pointwise_kernel='gemm'"):
    create_model(config)


def test_host_initial_variables_match_the_flax_initialisers_in_shape_and_spread():
  from deeplab_jax import config_defaults as defaults  # pylint: disable=g-import-not-at-top
  from deeplab_jax.model import create_model  # pylint: disable=g-import-not-at-top
  config = defaults.get_config()
  config.model.decoder_output_stride = 4
  model = create_model(config)
  sample = jnp.zeros((1, 33, 33, 3), jnp.float32)
  host = layers.host_initial_variables(model, sample, seed=3, train=False)
  device = jax.jit(lambda key: model.init(key, sample, train=False))(jax.random.key(0))
  host_leaves = jax.tree_util.tree_flatten_with_path(host)[0]
  device_leaves = jax.tree_util.tree_flatten_with_path(device)[0]
  assert [p for p, _ in host_leaves] == [p for p, _ in device_leaves]  # Same names.
  for (path, ours), (_, theirs) in zip(host_leaves, device_leaves):
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype, path
    if theirs.size >= 2000:  # Same distribution: spread and truncation bound.
      assert abs(ours.std() / theirs.std() - 1) < 0.1, path
      assert abs(np.abs(ours).max() / np.abs(theirs).max() - 1) < 0.1, path
    elif np.all(theirs == theirs.flat[0]):
      np.testing.assert_array_equal(ours, theirs)  # Constants: BN, biases.
  again = layers.host_initial_variables(model, sample, seed=3, train=False)
  other = layers.host_initial_variables(model, sample, seed=4, train=False)
  kernel = lambda v: v['params']['aspp0']['weights']
  np.testing.assert_array_equal(kernel(again), kernel(host))
  assert not np.array_equal(kernel(other), kernel(host))
