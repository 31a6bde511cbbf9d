r"""Training-step speed of a DeepLab config on this machine: one JSON line.

  python benchmarks/train_step.py --config=configs/voc_mnv2.py --batch_size=4 \
      --crop_size=320 [--output_stride=16] [--decoder] [--dtype=bfloat16]

Runs the real step of `deeplab_jax.train` (shard_map over all local devices,
sync batch norm, poly learning rate, momentum, L2, donated state) on random
weights and random labels, fed as the training loop feeds it (uint8 images and
labels). Steps are timed as the training loop runs them, each dispatched while
the last one still runs: the mean step time of a window of `--repeats` steps,
best and median of three windows. Also reported: the seconds to initialise the
state, to compile, and of the first step, and the peak device memory.

Imports JAX, Flax, optax, orbax and ml_collections only (no TensorFlow), so it
runs on an accelerator machine without the input pipeline's packages.
"""


from absl import app
from absl import flags

import common  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string('config', None, 'Config file, e.g. configs/voc_mnv2.py.', required=True)
flags.DEFINE_integer('batch_size', None, 'Global batch (default: config.global_batch_size).')
flags.DEFINE_list('crop_size', None, 'Crop "S" or "H,W" (default: train_crop_size).')
common.define_model_flags(flags)
flags.DEFINE_integer('repeats', 8, 'Steps per timed window; the best of 3 windows is reported.')
flags.DEFINE_string('compilation_cache_dir', None, 'Persistent XLA compilation cache.')


def random_batch(config, batch_size: int, crop_size):
  """uint8 images and labels, as the input pipeline sends them."""
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch_size, *crop_size, 3), dtype=np.uint8)
  labels = rng.integers(0, config.model.num_classes, (batch_size, *crop_size), dtype=np.uint8)
  labels[:, :8] = config.dataset.ignore_label  # Some ignored pixels, as in real crops.
  return {'image': images, 'label': labels}


def project_step(config):
  """(step, state, batch placement, state-init seconds) from `deeplab_jax.train`."""
  from deeplab_jax import parallel, train  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.global_batch_size, mesh)
  state, init_seconds = common.seconds_of(lambda: train.create_train_state(
      config, train.initial_variables(config, mesh), mesh))
  return (train.create_train_step(config, mesh), state,
          lambda b: parallel.global_batch(b, mesh), init_seconds)


def main(argv):
  del argv
  common.enable_compilation_cache(FLAGS.compilation_cache_dir)
  config = common.load_config(FLAGS.config)
  common.apply_model_flags(config, FLAGS)
  if FLAGS.batch_size is not None:
    config.global_batch_size = FLAGS.batch_size
  crop_size = common.crop_from_flag(FLAGS.crop_size, config.train_crop_size)
  config.train_crop_size = crop_size
  step, state, place, init_seconds = project_step(config)
  batch = place(random_batch(config, config.global_batch_size, crop_size))
  compiled, compile_seconds = common.compile_timed(step, state, batch)

  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], batch)  # The old state is donated.
    return metrics

  _, first_step_seconds = common.seconds_of(run)
  seconds = common.time_back_to_back(run, FLAGS.repeats)
  loss = float(jax.device_get(run()['loss']))
  record = common.report(
      dict(benchmark='train_step', config=FLAGS.config, backbone=config.model.backbone,
           batch_size=config.global_batch_size, crop_size=list(crop_size),
           output_stride=config.model.output_stride,
           decoder=config.model.decoder_output_stride is not None,
           dtype=config.model.dtype, final_loss=round(loss, 4), **common.kernels_of(config)),
      # Cost analysis counts one device's program of the shard_map.
      seconds, config.global_batch_size, common.flops_of(compiled) * jax.device_count(),
      compile_seconds, init_seconds=init_seconds, first_call_seconds=first_step_seconds)
  common.print_record(record)


if __name__ == '__main__':
  app.run(main)
