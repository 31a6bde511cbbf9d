"""Tests of the train step, the learning-rate schedule, frozen BN and resuming."""

import collections
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from deeplab_jax import config_defaults as defaults
from deeplab_jax import checkpointing
from deeplab_jax import parallel
from deeplab_jax import train
from deeplab_jax.model import create_model
from deeplab_jax.resize import resize_bilinear
import config_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module', autouse=True)
def compilation_cache(tmp_path_factory):
  """Tests share compiled steps (XLA compiles of the model take a minute on CPU)."""
  from jax._src import compilation_cache as cache  # pylint: disable=g-import-not-at-top
  directory = str(tmp_path_factory.mktemp('xla_cache'))
  previous = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  cache.reset_cache()
  yield directory
  jax.config.update('jax_compilation_cache_dir', previous[0])
  jax.config.update('jax_persistent_cache_min_compile_time_secs', previous[1])
  cache.reset_cache()


def tiny_config(**overrides):
  config = defaults.get_config()
  config.model.depth_multiplier = 0.25
  config.model.num_classes = 3
  config.global_batch_size = 2
  config.train_crop_size = (33, 33)
  config.eval_crop_size = (41, 49)
  config.eval_batch_size = 2
  config.num_train_steps = 4
  config.learning_rate = 0.05
  config.weight_decay = 1e-3
  config.log_every_steps = 1
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 1000
  config.num_prediction_images = 0
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split('.')
    for parent in parents:
      target = target[parent]
    target[leaf] = value
  return config


def random_batch(config, seed=0):
  rng = np.random.default_rng(seed)
  h, w = config.train_crop_size
  labels = rng.integers(0, config.model.num_classes, (config.global_batch_size, h, w))
  labels[:, :3] = 255  # Some ignored pixels, unevenly spread over devices.
  labels[0, :] = 255
  return {'image': rng.uniform(0, 255, (config.global_batch_size, h, w, 3)).astype(np.float32),
          'label': labels.astype(np.int32)}


def one_step(config, mesh, batch):
  """The state after one train step on `batch` over `mesh`, as numpy."""
  variables = train.initial_variables(config, mesh)
  state = train.create_train_state(config, variables, mesh)
  step = train.create_train_step(config, mesh)
  state, metrics = step(state, parallel.global_batch(batch, mesh))
  return jax.device_get(state), jax.device_get(metrics)


_EIGHT_DEVICE_SCRIPT = """
import numpy as np, jax
from deeplab_jax.heads import aspp
aspp.DROPOUT_RATE = 0.0  # Dropout masks depend on the local batch shape.
import train_test
from deeplab_jax import parallel
assert jax.device_count() == 8, jax.devices()
config = train_test.tiny_config(global_batch_size=8)
batch = train_test.random_batch(config)
out = {{}}
for name, devices in (('one', jax.devices()[:1]), ('eight', jax.devices())):
  state, metrics = train_test.one_step(config, parallel.make_mesh(devices), batch)
  flat = jax.tree_util.tree_flatten_with_path({{'params': state.params,
                                                'batch_stats': state.batch_stats}})[0]
  for path, leaf in flat:
    out[name + ':' + jax.tree_util.keystr(path)] = np.asarray(leaf)
  out[name + ':loss'] = np.asarray(metrics['loss'])
np.savez({output!r}, **out)
"""


def test_eight_devices_equal_one_device_on_the_same_global_batch(tmp_path, compilation_cache):
  output = str(tmp_path / 'steps.npz')
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
             TF_CPP_MIN_LOG_LEVEL='2', JAX_COMPILATION_CACHE_DIR=compilation_cache,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
             PYTHONPATH=os.pathsep.join([os.path.join(REPO, 'tests'), os.environ['PYTHONPATH']]))
  script = _EIGHT_DEVICE_SCRIPT.format(output=output)
  result = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  arrays = np.load(output)
  one = {k.split(':', 1)[1]: arrays[k] for k in arrays.files if k.startswith('one:')}
  eight = {k.split(':', 1)[1]: arrays[k] for k in arrays.files if k.startswith('eight:')}
  assert set(one) == set(eight)
  np.testing.assert_allclose(eight['loss'], one['loss'], rtol=1e-5)
  config = tiny_config(global_batch_size=8)
  initial = train.initial_variables(config, parallel.make_mesh(jax.devices()[:1]))
  initial = {jax.tree_util.keystr(p): np.asarray(leaf)
             for p, leaf in jax.tree_util.tree_flatten_with_path(initial)[0]}
  moved, update_norm, difference_norm = 0, 0.0, 0.0
  for name in initial:
    if name.startswith("['batch_stats']"):
      # Forward-only statistics: sync BN makes them equal to float precision.
      np.testing.assert_allclose(eight[name], one[name], rtol=1e-4, atol=1e-6, err_msg=name)
      continue
    # Parameter updates: gradients of early layers are sums of many cancelling
    # terms, so compare each update against the size of that update. A wrong
    # gradient collective would be off by a factor of 8.
    update_one, update_eight = one[name] - initial[name], eight[name] - initial[name]
    scale = np.abs(update_one).max()
    # Passes at 1% on a Zen 4 host, at 5.6% (a batch-norm gamma) on an Intel
    # Xeon, whose XLA:CPU kernels round differently; 25% leaves room for
    # summation order. The 8x trap fails both checks.
    assert np.abs(update_eight - update_one).max() <= 0.25 * scale + 1e-8, (
        name, np.abs(update_eight - update_one).max(), scale)
    update_norm += float(np.sum(update_one ** 2))
    difference_norm += float(np.sum((update_eight - update_one) ** 2))
    moved += scale > 0
  # Measured under 0.1% on a Zen 4 host and 3% on an Intel Xeon (also 3% with
  # config.model.pointwise_kernel=conv: these tiny random-init layers amplify rounding); a
  # gradient-scaling error gives 100% or more.
  assert difference_norm ** 0.5 < 0.1 * update_norm ** 0.5, (difference_norm, update_norm)
  assert moved > 0.9 * len([n for n in initial if n.startswith("['params']")])


def test_poly_schedule_values():
  config = tiny_config(num_train_steps=100, learning_rate=0.007)
  schedule = train.learning_rate_schedule(config)
  for step in (0, 1, 50, 99, 100, 150):
    expected = 0.007 * (1 - min(step, 100) / 100) ** 0.9
    np.testing.assert_allclose(float(schedule(step)), expected, rtol=1e-5, atol=1e-9)


def test_step_schedule_and_slow_start():
  config = tiny_config(learning_policy='step', learning_rate=0.01, learning_rate_decay_step=10,
                       learning_rate_decay_factor=0.1, slow_start_step=3,
                       slow_start_learning_rate=1e-4)
  schedule = train.learning_rate_schedule(config)
  values = [float(schedule(s)) for s in (0, 2, 3, 9, 10, 25)]
  np.testing.assert_allclose(values, [1e-4, 1e-4, 0.01, 0.01, 0.001, 0.0001], rtol=1e-5)


def test_optimizer_follows_the_schedule_and_momentum():
  config = tiny_config(num_train_steps=10, learning_rate=0.5)
  optimizer = train.create_optimizer(config)
  params = {'w': jnp.zeros(())}
  state = optimizer.init(params)
  accumulator, expected = 0.0, 0.0
  for step in range(3):
    grads = {'w': jnp.float32(step + 1.0)}
    updates, state = optimizer.update(grads, state, params)
    accumulator = 0.9 * accumulator + (step + 1.0)
    expected -= 0.5 * (1 - step / 10) ** 0.9 * accumulator
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    np.testing.assert_allclose(float(params['w']), expected, rtol=1e-5)


def test_unknown_policy_and_indivisible_batch_are_clear_errors():
  with pytest.raises(ValueError, match='learning_policy'):
    train.learning_rate_schedule(tiny_config(learning_policy='cosine'))
  mesh = parallel.make_mesh()
  with pytest.raises(ValueError, match='global_batch_size=0'):
    parallel.check_batch_size(0, mesh)


def test_frozen_batch_norm_keeps_statistics_but_trains_gamma_beta(tf_checkpoint):
  # Calibrated statistics (a zoo-like checkpoint): from a random init, frozen
  # unit statistics let activations vanish and gamma gradients underflow.
  config = tiny_config(fine_tune_batch_norm=False, init_checkpoint=tf_checkpoint(
      'mnv2_dm05_voc_os16'), **{'model.depth_multiplier': 0.5, 'model.num_classes': 21})
  mesh = parallel.make_mesh(jax.devices()[:1])
  variables = jax.device_get(train.initialise_from_checkpoint(
      config, train.initial_variables(config, mesh), mesh))
  state = train.create_train_state(config, variables, mesh)
  state, _ = train.create_train_step(config, mesh)(
      state, parallel.global_batch(random_batch(config), mesh))
  state = jax.device_get(state)
  for before, after in zip(jax.tree.leaves(variables['batch_stats']),
                           jax.tree.leaves(state.batch_stats)):
    np.testing.assert_array_equal(before, after)
  gamma_beta = [(jax.tree_util.keystr(p), leaf) for p, leaf in
                jax.tree_util.tree_flatten_with_path(variables['params'])[0]
                if jax.tree_util.keystr(p).endswith(("'gamma']", "'beta']"))]
  assert len(gamma_beta) > 100
  new = {jax.tree_util.keystr(p): leaf for p, leaf in
         jax.tree_util.tree_flatten_with_path(state.params)[0]}
  unchanged = [name for name, leaf in gamma_beta if np.array_equal(leaf, new[name])]
  assert not unchanged


def test_init_from_a_run_with_another_head_loads_the_backbone_and_starts_the_new_head_fresh(
    tmp_path):
  # A run trained with ASPP and no decoder, then a model with the cell, the
  # decoder and an auxiliary head (configs/custom.py's) started from its workdir.
  mesh = parallel.make_mesh(jax.devices()[:1])
  before = tiny_config()
  saved = jax.device_get(train.initial_variables(before, mesh, seed=5))
  checkpointing.save_variables(str(tmp_path), saved, step=7)
  config = tiny_config(init_checkpoint=str(tmp_path), auxiliary_loss_weight=0.4,
                       **{'model.dense_prediction_cell': 'cityscapes',
                          'model.decoder_output_stride': 4})
  fresh = jax.device_get(train.initial_variables(config, mesh))
  loaded = jax.device_get(train.initialise_from_checkpoint(config, fresh, mesh))
  flat = lambda tree: {jax.tree_util.keystr(p): leaf
                       for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
  saved, fresh, loaded = flat(saved), flat(fresh), flat(loaded)
  assert set(loaded) == set(fresh)
  from_checkpoint = [n for n in loaded if n in saved]
  assert sum("'MobilenetV2'" in n for n in from_checkpoint) > 100
  assert any("'logits/semantic'" in n for n in from_checkpoint)
  for name in loaded:
    np.testing.assert_array_equal(loaded[name], (saved if name in saved else fresh)[name],
                                  err_msg=name)
  assert {n.split("'")[3] for n in loaded if n not in saved} == {
      'meta_architecture', 'decoder', 'auxiliary'}


def test_fine_tuned_batch_norm_updates_statistics():
  config = tiny_config()
  mesh = parallel.make_mesh(jax.devices()[:1])
  variables = jax.device_get(train.initial_variables(config, mesh))
  state, _ = one_step(config, mesh, random_batch(config))
  changed = [not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(variables['batch_stats']), jax.tree.leaves(state.batch_stats))]
  assert all(changed)


def test_non_finite_loss_names_the_step():
  config = tiny_config()
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = train.create_train_state(config, train.initial_variables(config, mesh), mesh)
  step = train.create_train_step(config, mesh)
  batch = random_batch(config)
  batch['image'][1, 5, 5] = np.nan  # A broken input pixel poisons the step.
  pending = []
  for _ in range(4):
    state, metrics = step(state, parallel.global_batch(batch, mesh))
    pending.append(metrics)
  with pytest.raises(train.NonFiniteLossError, match=r'at step 1\d'):
    train._check_finite(pending, 10)


def source_dataset(num_examples, size=(40, 48), num_classes=3, seed=0):
  """Examples in the `load_split` contract: an image whose colour encodes the class."""
  rng = np.random.default_rng(seed)
  images, labels, names = [], [], []
  for index in range(num_examples):
    label = np.zeros(size, np.uint8)
    top, left = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
    label[top:top + size[0] // 2, left:left + size[1] // 2] = 1 + index % (num_classes - 1)
    label[0, :] = 255
    palette = np.array([[20, 20, 20], [230, 30, 30], [30, 230, 30]], np.uint8)
    image = palette[np.minimum(label, num_classes - 1)]
    images.append(image)
    labels.append(label[..., None])
    names.append(f'example_{index}')
  return tf.data.Dataset.from_tensor_slices(
      {'image': np.stack(images), 'label': np.stack(labels), 'name': np.array(names)})


def test_resume_after_interruption_reaches_the_same_parameters(tmp_path, caplog):
  """Also with a weight average (config.ema_decay, issue 17): it is checkpointed,
  restored on resume, and what evaluation and prediction restore. The run's
  two evaluations trace (and compile) one eval step."""
  config = tiny_config(ema_decay=0.9, eval_every_steps=2)
  source = source_dataset(6)
  straight = str(tmp_path / 'straight')
  events = collections.Counter()

  def count(event, duration, fun_name=None, **unused):
    del duration, unused
    events[event, fun_name] += 1

  jax.monitoring.register_event_duration_secs_listener(count)
  try:
    with caplog.at_level('INFO', logger='absl'):
      final = train.train_and_evaluate(config, straight, train_source=source,
                                       eval_source=source)
  finally:
    jax.monitoring.unregister_event_duration_listener(count)
  final = jax.device_get(final)
  assert int(final.step) == 4
  assert 'Evaluation at step 2' in caplog.text and 'Evaluation at step 4' in caplog.text
  eval_step = 'per_device_eval_step'  # The per-device function of evaluate.create_eval_step.
  assert events['/jax/core/compile/jaxpr_trace_duration', eval_step] == 1
  assert events['/jax/core/compile/backend_compile_duration', f'jit({eval_step})'] <= 1
  # Simulate a crash after step 2: its checkpoint is the last one on disk.
  resumed_dir = str(tmp_path / 'resumed')
  shutil.copytree(straight, resumed_dir)
  shutil.rmtree(os.path.join(resumed_dir, 'checkpoints', '4'))
  with open(os.path.join(resumed_dir, 'eval_results.json')) as f:
    assert json.load(f)['step'] == 4
  caplog.clear()
  # absl's own logger: other tests may have changed its level.
  with caplog.at_level('INFO', logger='absl'):
    resumed = jax.device_get(train.train_and_evaluate(config, resumed_dir, train_source=source,
                                                      eval_source=source))
  assert 'Resuming from the checkpoint of step 2' in caplog.text
  assert int(resumed.step) == 4
  for a, b in zip(jax.tree.leaves(final.params) + jax.tree.leaves(final.batch_stats)
                  + jax.tree.leaves(final.opt_state) + jax.tree.leaves(final.ema_params),
                  jax.tree.leaves(resumed.params) + jax.tree.leaves(resumed.batch_stats)
                  + jax.tree.leaves(resumed.opt_state) + jax.tree.leaves(resumed.ema_params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  steps = checkpointing.CheckpointManager(resumed_dir).all_steps()
  assert steps == [2, 4]
  # The average lags the weights, and is what a reader of the workdir gets.
  template = jax.device_get(train.initial_variables(config, parallel.make_mesh()))
  averaged, step = checkpointing.restore_variables(resumed_dir, template, ema=True)
  plain, _ = checkpointing.restore_variables(resumed_dir, template)
  assert step == 4
  for ema, read, weights, read_plain in zip(
      jax.tree.leaves(final.ema_params), jax.tree.leaves(averaged['params']),
      jax.tree.leaves(final.params), jax.tree.leaves(plain['params'])):
    np.testing.assert_array_equal(read, ema)
    np.testing.assert_array_equal(read_plain, weights)
  assert any(not np.allclose(e, w) for e, w in zip(jax.tree.leaves(final.ema_params),
                                                   jax.tree.leaves(final.params)))


def test_accumulated_micro_batches_give_the_whole_batch_gradient(monkeypatch):
  """Issue 17: k micro-batches of b/k make one step equal to one step on b.

  Exact for the gradient when batch norm uses its moving statistics (frozen) and
  dropout is off; with trained batch norm each micro-batch has its own
  statistics, as documented, and the moving averages get k updates.
  """
  from deeplab_jax.heads import aspp  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(aspp, 'DROPOUT_RATE', 0.0)  # Masks depend on the batch shape.
  mesh = parallel.make_mesh(jax.devices()[:1])
  config = tiny_config(global_batch_size=4, fine_tune_batch_norm=False)
  batch = random_batch(config)
  batch['label'][1] = 255  # Micro-batches with different numbers of labelled pixels.
  whole, whole_metrics = one_step(config, mesh, batch)
  config.accumulation_steps = 2
  accumulated, accumulated_metrics = one_step(config, mesh, batch)
  np.testing.assert_allclose(accumulated_metrics['loss'], whole_metrics['loss'], rtol=1e-5)
  np.testing.assert_allclose(accumulated_metrics['grad_norm'], whole_metrics['grad_norm'],
                             rtol=1e-4)
  initial = train.initial_variables(config, mesh)['params']
  for (path, start), a, b in zip(jax.tree_util.tree_flatten_with_path(initial)[0],
                                 jax.tree.leaves(accumulated.params),
                                 jax.tree.leaves(whole.params)):
    update = np.asarray(b) - np.asarray(start)
    np.testing.assert_allclose(np.asarray(a) - np.asarray(start), update,
                               atol=1e-3 * np.abs(update).max() + 1e-9,
                               err_msg=jax.tree_util.keystr(path))

  # Trained batch norm: statistics per micro-batch, so the steps differ, and
  # the moving averages moved twice.
  config = tiny_config(global_batch_size=4)
  whole, _ = one_step(config, mesh, batch)
  config.accumulation_steps = 2
  accumulated, _ = one_step(config, mesh, batch)
  mean = lambda state: np.asarray(jax.tree.leaves(state.batch_stats)[0])
  assert not np.allclose(mean(accumulated), mean(whole))


def train_mode_pixel_accuracy(config, variables, source):
  """Pixel accuracy on all of `source` in one training-mode batch (its own BN moments)."""
  examples = next(source.batch(1000).as_numpy_iterator())
  logits, _ = create_model(config).apply(
      variables, examples['image'].astype(np.float32), train=True, mutable=['batch_stats'],
      rngs={'dropout': jax.random.key(0)})
  labels = examples['label'][..., 0]
  predictions = np.asarray(jnp.argmax(resize_bilinear(logits, labels.shape[1:]), -1))
  valid = labels != 255
  return float(np.mean(predictions[valid] == labels[valid]))


def test_precise_batch_norm_makes_a_short_run_from_scratch_evaluate_as_it_trains(
    tmp_path, caplog):
  """80 steps from random weights with the original's decay 0.9997: the moving
  averages still describe the initial weights, and evaluation falls to one
  class; recomputed statistics make it score as the model does in training mode."""
  config = tiny_config(num_train_steps=80, checkpoint_every_steps=80, eval_every_steps=80,
                       train_crop_size=(41, 49), eval_crop_size=(41, 49), optimizer='adam',
                       learning_rate=0.005, min_scale_factor=1.0, max_scale_factor=1.0)
  config.model.decoder_output_stride = 4
  source = source_dataset(6)
  results = {}
  for batches in (0, 4):
    config.precise_batch_norm_batches = batches
    workdir = str(tmp_path / f'precise_{batches}')
    caplog.clear()
    with caplog.at_level('INFO', logger='absl'):
      state = jax.device_get(train.train_and_evaluate(config, workdir, train_source=source,
                                                      eval_source=source))
    with open(os.path.join(workdir, 'eval_results.json')) as f:
      results[batches] = (json.load(f), state, caplog.text)
  moving_averages, precise = results[0][0], results[4][0]
  trained_accuracy = train_mode_pixel_accuracy(config, results[4][1].variables, source)
  assert trained_accuracy > 0.85  # Measured 0.90; background alone is 0.74.
  # Measured 0.94 (no dropout at evaluation) and mean IoU 0.82.
  assert precise['pixel_accuracy'] > trained_accuracy - 0.02, (precise, trained_accuracy)
  assert precise['mean_iou'] > 0.7, precise
  assert 'Recomputed the batch-norm statistics of step 80 over 4 training batches' in results[4][2]
  assert 'collapsed to one class' not in results[4][2]
  # Measured 0.25: background only, and the log says so.
  assert moving_averages['mean_iou'] < 0.3, moving_averages
  assert "of the pixels are predicted as '0'" in results[0][2]
  # The same parameters either way: the statistics do not enter training.
  for a, b in zip(jax.tree.leaves(results[0][1].params), jax.tree.leaves(results[4][1].params)):
    np.testing.assert_array_equal(a, b)


def test_auto_class_weights_come_from_the_training_folders_pixel_histogram(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  custom = config_files.module('custom')
  from deeplab_jax import losses  # pylint: disable=g-import-not-at-top
  from deeplab_jax.data import datasets  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  histogram = np.zeros(3, np.int64)
  for split, count in (('train', 3), ('val', 1)):
    for sub in ('images', 'labels'):
      os.makedirs(tmp_path / sub / split)
    for i in range(count):
      label = np.zeros((20, 30), np.uint8)
      label[:4 + 3 * i, :5] = 1
      label[-2:, -2 - i:] = 2
      label[10, :] = 255
      if split == 'train':
        histogram += np.bincount(label[label != 255], minlength=3)
      Image.fromarray(label).save(tmp_path / 'labels' / split / f'{i}.png')
      Image.fromarray(rng.integers(0, 255, (20, 30, 3), np.uint8)).save(
          tmp_path / 'images' / split / f'{i}.png')
  (tmp_path / 'classes.txt').write_text('background\nbig\nrare\n')
  config = custom.get_config()
  config.dataset.data_dir = str(tmp_path)
  config.model.num_classes = 3
  config.class_weights = 'auto'
  source = datasets.load_split(config.dataset, 'train')
  weights = train.resolve_class_weights(config, source)
  assert weights == losses.balanced_class_weights(histogram)
  assert weights[2] > weights[1] > weights[0]  # The rarer, the heavier.
  config.class_weights = '1, 0.5,4'
  assert train.resolve_class_weights(config, source) == (1.0, 0.5, 4.0)
  config.class_weights = None
  assert train.resolve_class_weights(config, source) is None
  config.class_weights = '1,2'
  with pytest.raises(ValueError, match='config.class_weights'):
    train.resolve_class_weights(config, source)


def test_auxiliary_head_adds_its_weighted_loss_in_training_only(monkeypatch):
  """config.auxiliary_loss_weight: loss = cross-entropy + w·auxiliary cross-entropy
  + L2; the head trains, inference ignores it, and micro-batches agree."""
  from deeplab_jax import losses  # pylint: disable=g-import-not-at-top
  from deeplab_jax.heads import aspp, auxiliary  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(aspp, 'DROPOUT_RATE', 0.0)
  monkeypatch.setattr(auxiliary, 'DROPOUT_RATE', 0.0)
  mesh = parallel.make_mesh(jax.devices()[:1])
  assert 'auxiliary' not in train.initial_variables(tiny_config(), mesh)['params']
  # Frozen batch norm: the step's loss can be recomputed from the initial variables.
  config = tiny_config(auxiliary_loss_weight=0.4, fine_tune_batch_norm=False,
                       global_batch_size=4)
  batch = random_batch(config)
  initial = jax.device_get(train.initial_variables(config, mesh))
  state, metrics = one_step(config, mesh, batch)

  model = create_model(config)
  _, intermediates = model.apply(initial, batch['image'], train=True,
                                 mutable=['intermediates'], rngs={'dropout': jax.random.key(0)})
  (auxiliary_logits,) = intermediates['intermediates']['auxiliary_logits']
  loss_sum, count = losses.cross_entropy_sums(auxiliary_logits, batch['label'], num_classes=3)
  np.testing.assert_allclose(
      metrics['loss'] - metrics['cross_entropy'] - metrics['l2_loss'],
      0.4 * loss_sum / count, rtol=1e-4)
  start = initial['params']['auxiliary']['logits']['weights']
  assert not np.allclose(state.params['auxiliary']['logits']['weights'], start)

  # Inference does not run the head: changing it changes no logits.
  changed = jax.tree.map(lambda x: x, initial)
  changed['params']['auxiliary'] = jax.tree.map(lambda x: x + 1.0, initial['params']['auxiliary'])
  np.testing.assert_array_equal(model.apply(changed, batch['image']),
                                model.apply(initial, batch['image']))

  config.accumulation_steps = 2
  _, accumulated = one_step(config, mesh, batch)
  for key in ('loss', 'cross_entropy', 'grad_norm'):
    np.testing.assert_allclose(accumulated[key], metrics[key], rtol=1e-4, err_msg=key)
