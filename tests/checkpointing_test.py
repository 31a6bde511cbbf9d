"""Tests of the Orbax checkpoints: round trip, subsets, damage, mismatches, init."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deeplab_jax import checkpointing
from deeplab_jax import parallel
from deeplab_jax import train
from deeplab_jax.variables import CheckpointMismatchError


def toy_state(seed=0, width=4, step=0):
  rng = np.random.default_rng(seed)
  params = {'conv': {'weights': jnp.asarray(rng.normal(size=(3, width)), jnp.float32),
                     'BatchNorm': {'gamma': jnp.ones((width,)), 'beta': jnp.zeros((width,))}},
            'logits': {'semantic': {'weights': jnp.asarray(rng.normal(size=(width, 5)),
                                                           jnp.float32),
                                    'biases': jnp.zeros((5,))}}}
  batch_stats = {'conv': {'BatchNorm': {'moving_mean': jnp.asarray(rng.normal(size=width),
                                                                   jnp.float32),
                                        'moving_variance': jnp.ones((width,))}}}
  optimizer = optax.sgd(optax.constant_schedule(0.1), momentum=0.9)
  opt_state = optimizer.init(params)
  opt_state = jax.tree.map(lambda x: x + 0.5 if x.dtype == jnp.float32 else x + 3, opt_state)
  mesh = parallel.make_mesh()
  return jax.device_put(
      train.TrainState(step=jnp.asarray(step, jnp.int32), params=params,
                       batch_stats=batch_stats, opt_state=opt_state),
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_keeps_only_the_newest_and_restores_onto_shardings(tmp_path):
  manager = checkpointing.CheckpointManager(str(tmp_path), max_to_keep=2)
  for step in (1, 2, 3):
    manager.save(toy_state(seed=step, step=step))
  assert manager.all_steps() == [2, 3]
  template = toy_state(seed=99)
  restored = manager.restore_latest(template)
  manager.close()
  expected = toy_state(seed=3, step=3)
  assert int(restored.step) == 3
  assert_trees_equal(restored.params, expected.params)
  assert_trees_equal(restored.batch_stats, expected.batch_stats)
  assert_trees_equal(restored.opt_state, expected.opt_state)
  leaf = jax.tree.leaves(restored.params)[0]
  assert leaf.sharding.is_equivalent_to(jax.tree.leaves(template.params)[0].sharding, leaf.ndim)


def test_variables_only_restore_for_evaluation(tmp_path):
  manager = checkpointing.CheckpointManager(str(tmp_path))
  manager.save(toy_state(seed=5, step=7))
  manager.close()
  template = toy_state(seed=0)
  variables, step = checkpointing.restore_variables(
      str(tmp_path), {'params': template.params, 'batch_stats': template.batch_stats})
  assert step == 7
  assert_trees_equal(variables['params'], toy_state(seed=5).params)


def test_empty_workdir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='No checkpoint in .*--mode=convert'):
    checkpointing.restore_variables(str(tmp_path), {'params': {}, 'batch_stats': {}})
  assert checkpointing.CheckpointManager(str(tmp_path)).restore_latest(toy_state()) is None


def test_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
  manager = checkpointing.CheckpointManager(str(tmp_path), max_to_keep=3)
  manager.save(toy_state(seed=1, step=1))
  manager.save(toy_state(seed=2, step=2))
  manager.close()
  # Truncate every data file of the newest parameters.
  damaged = 0
  for root, _, files in os.walk(os.path.join(str(tmp_path), 'checkpoints', '2', 'params')):
    for name in files:
      with open(os.path.join(root, name), 'r+b') as f:
        f.truncate(3)
      damaged += 1
  assert damaged
  restored = checkpointing.CheckpointManager(str(tmp_path)).restore_latest(toy_state(seed=9))
  assert int(restored.step) == 1
  assert_trees_equal(restored.params, toy_state(seed=1).params)
  assert 'Cannot read the checkpoint of step 2' in caplog.text
  assert 'falling back to step 1' in caplog.text


def test_checkpoint_of_another_model_fails_naming_the_variables(tmp_path):
  manager = checkpointing.CheckpointManager(str(tmp_path))
  manager.save(toy_state(width=4, step=1))
  manager.close()
  with pytest.raises(CheckpointMismatchError) as error:
    checkpointing.CheckpointManager(str(tmp_path)).restore_latest(toy_state(width=6))
  message = str(error.value)
  assert 'params/conv/weights: (3, 4) in the checkpoint, (3, 6) in the model' in message
  assert 'batch_stats/conv/BatchNorm/moving_mean' in message


def test_init_from_orbax_without_the_last_layer_takes_fresh_logits(tmp_path):
  checkpointing.save_variables(str(tmp_path), {'params': toy_state(seed=1).params,
                                               'batch_stats': toy_state(seed=1).batch_stats})
  fresh = toy_state(seed=4)
  # A different number of classes: the saved logits cannot be restored as they are.
  fresh_params = dict(fresh.params, logits={'semantic': {
      'weights': jnp.ones((4, 7)), 'biases': jnp.zeros((7,))}})
  template = {'params': fresh_params, 'batch_stats': fresh.batch_stats}
  loaded = checkpointing.load_variables_for_init(str(tmp_path), template, backbone_scope='conv',
                                                 include_logits=False)
  np.testing.assert_array_equal(loaded['params']['logits']['semantic']['weights'],
                                np.ones((4, 7)))
  assert_trees_equal(loaded['params']['conv'], toy_state(seed=1).params['conv'])
  with pytest.raises(CheckpointMismatchError, match='logits/semantic/weights'):
    checkpointing.load_variables_for_init(str(tmp_path), template, backbone_scope='conv',
                                          include_logits=True)


def test_init_from_orbax_of_another_head_loads_what_matches_and_starts_the_rest_fresh(tmp_path):
  saved = toy_state(seed=1)
  checkpointing.save_variables(str(tmp_path), {
      'params': dict(saved.params, aspp={'weights': jnp.ones((4, 4))}),
      'batch_stats': saved.batch_stats})
  fresh = toy_state(seed=4)
  template = {'params': dict(fresh.params, cell={'weights': jnp.full((4, 3), 7.0)}),
              'batch_stats': fresh.batch_stats}
  loaded = checkpointing.load_variables_for_init(str(tmp_path), template, backbone_scope='conv')
  assert_trees_equal(loaded['params'], dict(saved.params, cell=template['params']['cell']))
  assert_trees_equal(loaded['batch_stats'], saved.batch_stats)
  # The backbone must match: another width is refused by name.
  other = toy_state(width=6)
  with pytest.raises(CheckpointMismatchError, match=r'conv/weights: \(3, 4\) in the checkpoint'):
    checkpointing.load_variables_for_init(
        str(tmp_path), {'params': other.params, 'batch_stats': other.batch_stats},
        backbone_scope='conv', include_logits=False)


def test_converted_checkpoint_restores_for_training_with_fresh_optimizer(tmp_path):
  saved = toy_state(seed=3)
  checkpointing.save_variables(str(tmp_path), {'params': saved.params,
                                               'batch_stats': saved.batch_stats})
  template = toy_state(seed=8)
  restored = checkpointing.CheckpointManager(str(tmp_path)).restore_latest(template)
  assert int(restored.step) == 0
  assert_trees_equal(restored.params, saved.params)
  assert_trees_equal(restored.opt_state, template.opt_state)
