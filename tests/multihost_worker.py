"""One process of the multi-host test (run by tests/multihost_test.py).

usage: multihost_worker.py OUT_DIR WORKDIR DEVICES_PER_PROCESS NUM_PROCESSES PROCESS_ID PORT

Every process feeds its own slice of the same global batches, trains a few
steps, saves and restores a checkpoint together with the others, and
evaluates its own shard of the evaluation examples. Process 0 writes the
losses, the parameter updates and the evaluation result to OUT_DIR.
"""

import json
import os
import sys

out_dir, workdir = sys.argv[1], sys.argv[2]
devices, num_processes, process_id, port = (int(a) for a in sys.argv[3:7])

import jax  # pylint: disable=g-import-not-at-top

jax.config.update('jax_num_cpu_devices', devices)
if num_processes > 1:
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(f'127.0.0.1:{port}', num_processes, process_id)

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
from flax import traverse_util  # pylint: disable=g-import-not-at-top
from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

import config_files  # pylint: disable=g-import-not-at-top
from deeplab_jax import checkpointing, evaluate, parallel, train  # pylint: disable=g-import-not-at-top

voc_mnv2 = config_files.module('voc_mnv2')

NUM_STEPS, GLOBAL_BATCH, CROP, NUM_CLASSES, NUM_EVAL = 2, 4, 65, 4, 6

config = voc_mnv2.get_config('tiny')
config.model.num_classes = NUM_CLASSES
config.model.depth_multiplier = 0.5
config.global_batch_size = config.eval_batch_size = GLOBAL_BATCH
config.train_crop_size = config.eval_crop_size = (CROP, CROP)
config.dataset.min_resize_value = config.dataset.max_resize_value = None  # Images are CROP.
config.num_train_steps = 10
config.learning_rate = 0.01
config.num_prediction_images = 0
config.num_eval_images = None  # All six, split 3 + 3 between the processes.

rng = np.random.RandomState(0)
images = rng.uniform(0, 255, (NUM_STEPS, GLOBAL_BATCH, CROP, CROP, 3)).astype(np.float32)
labels = rng.randint(0, NUM_CLASSES, (NUM_STEPS, GLOBAL_BATCH, CROP, CROP)).astype(np.int32)
mine = slice(process_id * GLOBAL_BATCH // num_processes,
             (process_id + 1) * GLOBAL_BATCH // num_processes)

mesh = parallel.make_mesh()
assert mesh.size == num_processes * devices, mesh
state = train.create_train_state(config, train.initial_variables(config, mesh), mesh)
initial_params = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), state.params)
template = train.create_train_state(config, train.initial_variables(config, mesh), mesh)
train_step = train.create_train_step(config, mesh)
step_losses = []
for step in range(NUM_STEPS):
  batch = parallel.global_batch({'image': images[step, mine], 'label': labels[step, mine]}, mesh)
  state, metrics = train_step(state, batch)
  step_losses.append(float(metrics['loss']))

# Every process takes part in saving and restoring.
manager = checkpointing.CheckpointManager(workdir, 2)
manager.save(state)
manager.wait_until_finished()
restored = manager.restore_latest(template)
manager.close()
assert int(restored.step) == NUM_STEPS


def local_copy(tree):
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


same = jax.tree.map(np.array_equal, local_copy(restored.params), local_copy(state.params))
assert all(jax.tree.leaves(same)), 'restored parameters differ from the saved ones'

# Evaluation: each process reads its own shard of the evaluation examples.
eval_images = rng.randint(0, 256, (NUM_EVAL, CROP, CROP, 3)).astype(np.uint8)
eval_labels = rng.randint(0, NUM_CLASSES, (NUM_EVAL, CROP, CROP, 1)).astype(np.uint8)
shard = slice(process_id * NUM_EVAL // num_processes, (process_id + 1) * NUM_EVAL // num_processes)
source = tf.data.Dataset.from_tensor_slices({
    'image': eval_images[shard], 'label': eval_labels[shard],
    'name': np.asarray([f'eval_{i}' for i in range(NUM_EVAL)])[shard]})
# Fresh (seeded, identical) weights: trained ones differ by float rounding
# between the two layouts, and so could a few predicted pixels.
results = evaluate.evaluate(config, workdir, train.initial_variables(config, mesh), NUM_STEPS,
                            mesh=mesh, source=source,
                            num_examples=NUM_EVAL)

# Precise BN of the (seeded, identical) initial weights over both training
# batches, each process reading its own rows: the same on every device and host.
initial = train.initial_variables(config, mesh)
statistics = train.create_batch_norm_statistics(config, mesh)(
    initial['params'], initial['batch_stats'],
    [{'image': images[step, mine]} for step in range(NUM_STEPS)])
for leaf in jax.tree.leaves(statistics):
  shards = [np.asarray(shard.data) for shard in leaf.addressable_shards]
  assert all(np.array_equal(shards[0], other) for other in shards[1:])
  gathered = multihost_utils.process_allgather(shards[0])
  assert all(np.array_equal(gathered[0], other) for other in gathered[1:])

if process_id == 0:
  updates = jax.tree.map(np.subtract, local_copy(state.params), initial_params)
  np.savez(os.path.join(out_dir, 'updates.npz'), **traverse_util.flatten_dict(updates, sep='/'))
  np.savez(os.path.join(out_dir, 'statistics.npz'),
           **traverse_util.flatten_dict(local_copy(statistics), sep='/'))
  with open(os.path.join(out_dir, 'results.json'), 'w') as f:
    json.dump({'losses': step_losses, 'mean_iou': results['mean_iou'],
               'num_images': results['num_images']}, f)
