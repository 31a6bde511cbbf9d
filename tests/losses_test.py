"""The training loss against the original's values, plus decay and multipliers."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fixtures_dir
from deeplab_jax import losses

REL_TOL = 1e-5


@pytest.fixture(scope='module')
def loss_fixture():
  folder = os.path.join(fixtures_dir(), 'preprocess')
  json_path = os.path.join(folder, 'loss.json')
  npz_path = os.path.join(folder, 'loss.npz')
  for path in (json_path, npz_path):
    if not os.path.exists(path):
      pytest.fail(f'Loss fixture {path} is missing. Put the shared fixtures under '
                  f'{fixtures_dir()}/preprocess or point DEEPLAB_FIXTURES at them.')
  with open(json_path) as f:
    meta = json.load(f)
  return meta, dict(np.load(npz_path))


def case_kwargs(case):
  kwargs = dict(case['kwargs'])
  if case['global_step'] is not None:
    kwargs['step'] = case['global_step']
  return kwargs


def test_matches_all_original_cases(loss_fixture):
  meta, data = loss_fixture
  assert len(meta['cases']) == 6
  for case in meta['cases']:
    loss = losses.cross_entropy_loss(data['logits'], data['labels'], num_classes=21,
                                     ignore_label=255, **case_kwargs(case))
    expected = float(data['loss_' + case['name']])
    assert expected == pytest.approx(case['loss'])
    assert float(loss) == pytest.approx(expected, rel=REL_TOL), case['name']


def test_traced_step_under_jit_and_warm_up_ends(loss_fixture):
  meta, data = loss_fixture
  expected = {case['name']: case['loss'] for case in meta['cases']}

  @jax.jit
  def loss_at(step):
    return losses.cross_entropy_loss(data['logits'], data['labels'], num_classes=21,
                                     top_k_percent_pixels=0.25, hard_example_mining_step=100,
                                     step=step)

  at_50 = float(loss_at(jnp.int32(50)))
  assert at_50 == pytest.approx(expected['upsample_topk025_mining_step100_at_step50'], rel=REL_TOL)
  # Step 0 keeps every pixel (all valid CEs are > 0), past M only the top 25%.
  assert float(loss_at(jnp.int32(0))) == pytest.approx(expected['upsample_topk1'], rel=REL_TOL)
  assert float(loss_at(jnp.int32(500))) == pytest.approx(expected['upsample_topk025'],
                                                         rel=REL_TOL)


def test_sums_over_shards_give_the_global_mean(loss_fixture):
  _, data = loss_fixture
  logits, labels = data['logits'], data['labels']
  whole = losses.cross_entropy_loss(logits, labels, num_classes=21)
  sums = [losses.cross_entropy_sums(logits[i:i + 1], labels[i:i + 1], num_classes=21)
          for i in range(2)]
  total = sum(float(s) for s, _ in sums) / sum(float(c) for _, c in sums)
  assert total == pytest.approx(float(whole), rel=1e-6)
  # The count is the number of non-ignored label pixels.
  assert sum(float(c) for _, c in sums) == float(np.sum(labels != 255))


def test_small_case_by_hand():
  logits = np.zeros((1, 2, 2, 3), np.float32)
  logits[0, 0, 0] = [2.0, 0.0, 0.0]
  logits[0, 1, 1] = [0.0, 0.0, 5.0]
  labels = np.array([[[0, 1], [255, 2]]], np.int32)
  def ce(row, label):
    row = row.astype(np.float64)
    return -(row[label] - np.log(np.sum(np.exp(row))))
  per_pixel = [ce(logits[0, 0, 0], 0), ce(logits[0, 0, 1], 1), ce(logits[0, 1, 1], 2)]
  loss_sum, count = losses.cross_entropy_sums(logits, labels, num_classes=3)
  assert float(count) == 3.0
  assert float(loss_sum) == pytest.approx(sum(per_pixel), rel=REL_TOL)
  # Labels with a trailing channel axis are the same thing.
  same = losses.cross_entropy_loss(logits, labels[..., None], num_classes=3)
  assert float(same) == pytest.approx(sum(per_pixel) / 3, rel=REL_TOL)
  # Top 50% of the 4 pixels (ignored one included) = the 2 largest losses.
  top = losses.cross_entropy_loss(logits, labels, num_classes=3, top_k_percent_pixels=0.5)
  assert float(top) == pytest.approx(np.mean(sorted(per_pixel)[-2:]), rel=REL_TOL)
  # Per-class weights scale each pixel's term and drop zero-weight classes from the count.
  weighted_sum, weighted_count = losses.cross_entropy_sums(
      logits, labels, num_classes=3, label_weights=[1.0, 0.0, 3.0])
  assert float(weighted_count) == 2.0
  assert float(weighted_sum) == pytest.approx(per_pixel[0] + 3 * per_pixel[2], rel=REL_TOL)


def test_ignored_pixels_get_no_gradient_and_all_ignored_is_zero():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(1, 3, 3, 4)), jnp.float32)
  labels = np.full((1, 3, 3), 255, np.int32)
  labels[0, 0, 0] = 2
  grads = jax.grad(lambda x: losses.cross_entropy_loss(x, labels, num_classes=4))(logits)
  assert np.all(np.asarray(grads)[0, 1:] == 0) and np.any(np.asarray(grads)[0, 0, 0] != 0)
  all_ignored = np.full((1, 3, 3), 255, np.int32)
  value, grads = jax.value_and_grad(
      lambda x: losses.cross_entropy_loss(x, all_ignored, num_classes=4))(logits)
  assert float(value) == 0.0 and np.all(np.asarray(grads) == 0)
  value = losses.cross_entropy_loss(logits, all_ignored, num_classes=4, top_k_percent_pixels=0.5)
  assert float(value) == 0.0


def test_bad_inputs_raise_clear_errors():
  logits = np.zeros((1, 2, 2, 3), np.float32)
  with pytest.raises(ValueError, match='num_classes'):
    losses.cross_entropy_sums(logits, np.zeros((1, 2, 2), np.int32), num_classes=4)
  with pytest.raises(ValueError, match='labels must be'):
    losses.cross_entropy_sums(logits, np.zeros((2, 2), np.int32), num_classes=3)
  with pytest.raises(ValueError, match='step'):
    losses.cross_entropy_sums(logits, np.zeros((1, 2, 2), np.int32), num_classes=3,
                              top_k_percent_pixels=0.5, hard_example_mining_step=10)
  with pytest.raises(ValueError, match='top_k_percent_pixels'):
    losses.cross_entropy_sums(logits, np.zeros((1, 2, 2), np.int32), num_classes=3,
                              top_k_percent_pixels=1.5)


def example_params():
  return {
      'MobilenetV2': {
          'Conv': {'weights': np.full((1, 1, 2, 2), 1.0, np.float32),
                   'BatchNorm': {'gamma': np.full((2,), 3.0), 'beta': np.full((2,), 3.0)}},
          'expanded_conv': {'depthwise': {'depthwise_weights': np.full((3, 3, 2, 1), 5.0)}},
      },
      'aspp0': {'weights': np.full((1, 1, 2, 2), 2.0, np.float32),
                'BatchNorm': {'gamma': np.ones((2,)), 'beta': np.zeros((2,))}},
      'decoder': {'decoder_conv0_pointwise': {'weights': np.ones((1, 1, 2, 2))}},
      'logits': {'semantic': {'weights': np.full((1, 1, 2, 3), 0.5, np.float32),
                              'biases': np.full((3,), 7.0, np.float32)}},
  }


def test_l2_regularization_decays_only_conv_weights():
  params = example_params()
  squares = 4 * 1.0 + 4 * 4.0 + 4 * 1.0 + 6 * 0.25
  assert float(losses.l2_regularization(params, 4e-5)) == pytest.approx(4e-5 * squares / 2)
  # Wrapped in Flax's {'params': ...} it is the same.
  assert float(losses.l2_regularization({'params': params}, 1.0)) == pytest.approx(squares / 2)
  grads = jax.grad(lambda p: losses.l2_regularization(p, 0.1))(
      jax.tree.map(jnp.asarray, params))
  assert np.all(np.asarray(grads['MobilenetV2']['expanded_conv']['depthwise']
                           ['depthwise_weights']) == 0)
  assert np.allclose(grads['aspp0']['weights'], 0.1 * 2.0)


def test_gradient_multipliers_follow_the_name_rules():
  params = {'params': example_params()}
  default = losses.gradient_multipliers(params)['params']
  assert default['logits']['semantic']['biases'] == 2.0
  assert default['logits']['semantic']['weights'] == 1.0
  assert default['aspp0']['weights'] == 1.0
  assert default['MobilenetV2']['Conv']['weights'] == 1.0

  last = losses.gradient_multipliers(params, last_layer_gradient_multiplier=10.0)['params']
  assert last['logits']['semantic']['biases'] == 20.0
  assert last['logits']['semantic']['weights'] == 10.0
  assert last['aspp0']['BatchNorm']['gamma'] == 10.0
  assert last['decoder']['decoder_conv0_pointwise']['weights'] == 10.0
  assert last['MobilenetV2']['Conv']['weights'] == 1.0

  only_logits = losses.gradient_multipliers(params, 10.0, last_layers_contain_logits_only=True)
  only_logits = only_logits['params']
  assert only_logits['logits']['semantic']['weights'] == 10.0
  assert only_logits['aspp0']['weights'] == 1.0
  assert only_logits['decoder']['decoder_conv0_pointwise']['weights'] == 1.0
  assert (jax.tree.structure(only_logits) ==
          jax.tree.structure(example_params()))


_SHARD_MAP_SCRIPT = r'''
import sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from deeplab_jax import losses
data = np.load(sys.argv[1])
logits, labels = data['logits'], data['labels']
mesh = jax.make_mesh((2,), ('data',))
scale = jnp.ones((21,), jnp.float32)

def global_mean(scale, x, y):
  loss_sum, count = losses.cross_entropy_sums(x * scale, y, num_classes=21)
  return jax.lax.psum(loss_sum, 'data') / jax.lax.psum(count, 'data')

step = jax.jit(jax.shard_map(jax.value_and_grad(global_mean), mesh=mesh,
                             in_specs=(P(), P('data'), P('data')), out_specs=(P(), P())))
batch = NamedSharding(mesh, P('data'))
loss, grads = step(scale, jax.device_put(logits, batch), jax.device_put(labels, batch))
ref_loss, ref_grads = jax.value_and_grad(
    lambda s: losses.cross_entropy_loss(logits * s, labels, num_classes=21))(scale)
assert abs(float(loss) - float(ref_loss)) < 1e-6 * float(ref_loss), (loss, ref_loss)
np.testing.assert_allclose(grads, ref_grads, rtol=1e-5, atol=1e-8)
print('OK')
'''


def test_psum_of_sums_under_shard_map_equals_one_device(loss_fixture):
  # Needs 2 fake devices, which must be set before JAX starts: run in a child.
  folder = os.path.join(fixtures_dir(), 'preprocess')
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2',
             JAX_PLATFORMS='cpu',
             PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  result = subprocess.run([sys.executable, '-c', _SHARD_MAP_SCRIPT,
                           os.path.join(folder, 'loss.npz')],
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0 and 'OK' in result.stdout, result.stderr[-3000:]


def test_balanced_class_weights_are_median_frequency_with_mean_pixel_weight_one():
  histogram = [900, 90, 0, 10]
  weights = np.asarray(losses.balanced_class_weights(histogram))
  frequencies = np.asarray(histogram) / 1000
  present = frequencies > 0
  # Median-frequency balancing up to one factor: w_c / w_d = f_d / f_c ...
  median = np.median(frequencies[present])
  np.testing.assert_allclose(weights[present] / weights[1], median / frequencies[present],
                             rtol=1e-12)
  # ... chosen so that the mean weight over the labelled pixels is 1.
  assert float(np.sum(frequencies * weights)) == pytest.approx(1.0, rel=1e-12)
  assert weights[2] == 1.0  # Never occurs: nothing to weigh.
  np.testing.assert_allclose(weights[[0, 1, 3]], [1 / 2.7, 1 / 0.27, 1 / 0.03], rtol=1e-12)
  with pytest.raises(ValueError, match='histogram'):
    losses.balanced_class_weights([0, 0, 0])


def test_class_weights_change_the_loss_as_defined():
  """Sum of class-weighted pixel losses over the number of pixels that carry weight."""
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(2, 4, 4, 3)), jnp.float32)
  labels = rng.integers(0, 3, (2, 4, 4)).astype(np.int32)
  labels[0, 0] = 255
  log_probs = np.asarray(jax.nn.log_softmax(logits, -1))
  valid = labels != 255
  per_pixel = -np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
  weights = np.array([0.25, 2.0, 6.0])
  expected = np.sum((per_pixel * weights[np.where(valid, labels, 0)])[valid]) / valid.sum()
  weighted = losses.cross_entropy_loss(logits, labels, num_classes=3,
                                       label_weights=tuple(weights))
  assert float(weighted) == pytest.approx(expected, rel=REL_TOL)
  unweighted = losses.cross_entropy_loss(logits, labels, num_classes=3)
  assert float(unweighted) == pytest.approx(np.mean(per_pixel[valid]), rel=REL_TOL)
  assert abs(float(weighted) - float(unweighted)) > 0.1
