"""Feeding the devices: uint8 batches, prefetching, padding restored on device."""

import jax
import numpy as np

from deeplab_jax import evaluate
from deeplab_jax import parallel
from deeplab_jax import train
from train_test import random_batch, tiny_config


def test_a_uint8_batch_gives_the_same_step_as_its_float32_version():
  config = tiny_config()
  mesh = parallel.make_mesh()
  float_batch = random_batch(config)
  float_batch['image'] = np.round(float_batch['image'])  # Integer pixels, as uint8 holds.
  uint8_batch = {'image': float_batch['image'].astype(np.uint8),
                 'label': float_batch['label'].astype(np.uint8)}
  step = train.create_train_step(config, mesh)
  results = []
  for batch in (float_batch, uint8_batch):
    state = train.create_train_state(config, train.initial_variables(config, mesh), mesh)
    results.append(jax.device_get(step(state, parallel.global_batch(batch, mesh))))
  (float_state, float_metrics), (uint8_state, uint8_metrics) = results
  assert float(uint8_metrics['loss']) == float(float_metrics['loss'])
  for a, b in zip(jax.tree.leaves(uint8_state), jax.tree.leaves(float_state)):
    np.testing.assert_array_equal(a, b)


def test_prefetch_sends_the_next_batch_before_the_current_one_is_used():
  mesh = parallel.make_mesh()
  read = []

  def batches():
    for i in range(4):
      read.append(i)
      yield {'image': np.full((2, 3, 3, 3), i, np.uint8), 'label': np.zeros((2, 3, 3), np.uint8),
             'name': np.array([b'a', b'b'])}

  seen = []
  for host, device in parallel.prefetch_to_devices(batches(), mesh, keys=('image', 'label')):
    assert set(device) == {'image', 'label'} and 'name' in host
    assert isinstance(device['image'], jax.Array) and device['image'].dtype == np.uint8
    index = int(host['image'][0, 0, 0, 0])
    # One batch ahead: the next one is already read and sent.
    assert read == list(range(min(index + 2, 4)))
    np.testing.assert_array_equal(np.asarray(device['image']), host['image'])
    seen.append(index)
  assert seen == [0, 1, 2, 3]


def test_evaluation_restores_the_exact_padding_value():
  images = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3)).astype(np.uint8)
  heights, widths = np.array([3, 0]), np.array([4, 0])  # The second is a padding example.
  restored = np.asarray(evaluate.with_padding(images, heights, widths, (127.5, 120.25, 1.0)))
  assert restored.dtype == np.float32
  np.testing.assert_array_equal(restored[0, :3, :4], images[0, :3, :4])
  for padded in (restored[0, 3:], restored[0, :, 4:], restored[1]):
    np.testing.assert_array_equal(padded, np.broadcast_to([127.5, 120.25, 1.0], padded.shape))
