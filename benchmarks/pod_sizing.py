r"""Sizing a TPU pod on paper: per-device FLOPs, bytes and memory of the train step.

  python benchmarks/pod_sizing.py --config=configs/voc_xception65.py --per_device_batch=2

Compiles the real training step (`deeplab_jax.train`, one device) on this host
and reads XLA's cost analysis (FLOPs, bytes accessed) and memory analysis
(arguments, outputs, temporaries) of it. From those it derives a roofline
lower bound of the step time on TPU v4 and v5e (peak bf16 FLOP/s and HBM
bandwidth) and compares the memory with their HBM. Figures are from the CPU
compilation in float32, so memory is an upper bound for bfloat16 runs.
Prints one JSON line.
"""

import json

from absl import app
from absl import flags

import common  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string('config', None, 'Config file, e.g. configs/voc_mnv2.py.', required=True)
flags.DEFINE_integer('per_device_batch', 2, 'Images per device and step.')
flags.DEFINE_list('crop_size', None, 'Crop "S" or "H,W" (default: train_crop_size).')

# Public peak figures per chip: bf16 FLOP/s, HBM bytes/s, HBM bytes.
TPUS = {'v4': (275e12, 1.2e12, 32 * 2**30), 'v5e': (197e12, 8.19e11, 16 * 2**30)}


def main(argv):
  del argv
  from deeplab_jax import parallel, train  # pylint: disable=g-import-not-at-top
  config = common.load_config(FLAGS.config)
  crop = common.crop_from_flag(FLAGS.crop_size, config.train_crop_size)
  config.global_batch_size = FLAGS.per_device_batch
  mesh = parallel.make_mesh(jax.devices()[:1])
  state = train.create_train_state(config, train.initial_variables(config, mesh), mesh)
  batch = parallel.global_batch({
      'image': np.zeros((FLAGS.per_device_batch, *crop, 3), np.float32),
      'label': np.zeros((FLAGS.per_device_batch, *crop), np.int32)}, mesh)
  compiled = train.create_train_step(config, mesh).lower(state, batch).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  memory = compiled.memory_analysis()
  flops, bytes_accessed = common.flops_of(compiled), float(cost['bytes accessed'])
  device_bytes = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                  + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
  result = {
      'config': FLAGS.config, 'crop_size': list(crop), 'per_device_batch': FLAGS.per_device_batch,
      'gflops_per_step': flops / 1e9, 'gbytes_accessed_per_step': bytes_accessed / 1e9,
      'memory_gib_f32': device_bytes / 2**30,
      'parameters_millions': sum(x.size for x in jax.tree.leaves(state.params)) / 1e6,
  }
  for name, (peak, bandwidth, hbm) in TPUS.items():
    roofline = max(flops / peak, bytes_accessed / bandwidth)
    result[f'tpu_{name}_roofline_ms'] = 1e3 * roofline
    result[f'tpu_{name}_fits_hbm'] = device_bytes < hbm
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
