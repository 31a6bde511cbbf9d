r"""Inference speed of a DeepLab config on this machine: one JSON line.

  python benchmarks/inference.py --config=configs/voc_mnv2.py --batch_size=1 \
      [--crop_size=513] [--output_stride=16] [--decoder] [--output=labels|logits] \
      [--dtype=bfloat16]

Random weights (speed does not depend on them). The timed function is what
evaluation runs: logits, bilinear upsampling to the input size and argmax
(`--output=logits` stops at the logits). Batch norm is folded into the convs.
Also reported: the seconds to initialise the variables, to compile, and of the
first call, and the peak device memory. No TensorFlow is imported.
"""

import functools

from absl import app
from absl import flags

import common  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

import deeplab_jax  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string('config', None, 'Config file, e.g. configs/voc_mnv2.py.', required=True)
flags.DEFINE_integer('batch_size', 1, 'Images per call.')
flags.DEFINE_list('crop_size', None, 'Input size "S" or "H,W" (default: eval_crop_size).')
common.define_model_flags(flags)
flags.DEFINE_enum('output', 'labels', ['labels', 'logits'], 'What the timed function returns.')
flags.DEFINE_integer('repeats', 10, 'Timed calls (the minimum is reported).')
flags.DEFINE_string('compilation_cache_dir', None, 'Persistent XLA compilation cache.')


def build(config, batch_size: int, crop_size, output: str):
  """(jitted function of (variables, images), variables, images, init seconds)."""
  from deeplab_jax import parallel, train  # pylint: disable=g-import-not-at-top
  model = deeplab_jax.create_model(config)
  images = jnp.full((batch_size, *crop_size, 3), 127.5, jnp.float32)
  images = images + jax.random.uniform(jax.random.key(1), images.shape, maxval=100.0)
  variables, init_seconds = common.seconds_of(
      lambda: jax.device_put(train.initial_variables(config, parallel.make_mesh()),
                             jax.local_devices()[0]))
  if output == 'labels':
    forward = functools.partial(deeplab_jax.predict_labels, model)
  else:
    forward = functools.partial(model.apply, train=False)
  return jax.jit(forward), variables, images, init_seconds


def main(argv):
  del argv
  common.enable_compilation_cache(FLAGS.compilation_cache_dir)
  config = common.load_config(FLAGS.config)
  common.apply_model_flags(config, FLAGS)
  crop_size = common.crop_from_flag(FLAGS.crop_size, config.eval_crop_size)
  forward, variables, images, init_seconds = build(config, FLAGS.batch_size, crop_size,
                                                   FLAGS.output)
  compiled, compile_seconds = common.compile_timed(forward, variables, images)
  _, first_call_seconds = common.seconds_of(lambda: compiled(variables, images))
  seconds = common.time_calls(lambda: compiled(variables, images), FLAGS.repeats)
  record = common.report(
      dict(benchmark='inference', config=FLAGS.config, backbone=config.model.backbone,
           batch_size=FLAGS.batch_size, crop_size=list(crop_size),
           output_stride=config.model.output_stride,
           decoder=config.model.decoder_output_stride is not None, output=FLAGS.output,
           dtype=config.model.dtype, **common.kernels_of(config)),
      seconds, FLAGS.batch_size, common.flops_of(compiled), compile_seconds,
      init_seconds=init_seconds, first_call_seconds=first_call_seconds)
  common.print_record(record)


if __name__ == '__main__':
  app.run(main)
