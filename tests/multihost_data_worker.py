"""One process of multihost_test's data test.

usage: multihost_data_worker.py OUT_DIR DATA_DIR NUM_PROCESSES PROCESS_ID PORT

Every process loads its shard of the synthetic dataset from one shared,
not yet prepared data_dir, counting how often it ran TFDS's preparation, and
writes the names of its examples to OUT_DIR/<PROCESS_ID>.json.
"""

import json
import os
import sys

out_dir, data_dir = sys.argv[1], sys.argv[2]
num_processes, process_id, port = (int(a) for a in sys.argv[3:6])

import jax  # pylint: disable=g-import-not-at-top

jax.config.update('jax_num_cpu_devices', 1)
jax.config.update('jax_cpu_collectives_implementation', 'gloo')
jax.distributed.initialize(f'127.0.0.1:{port}', num_processes, process_id)

import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

import config_files  # pylint: disable=g-import-not-at-top
from deeplab_jax.data import datasets  # pylint: disable=g-import-not-at-top

quickstart = config_files.module('quickstart')

preparations = []
prepare = tfds.core.DatasetBuilder.download_and_prepare


def counted_prepare(self, *args, **kwargs):
  preparations.append(self.name)
  return prepare(self, *args, **kwargs)


tfds.core.DatasetBuilder.download_and_prepare = counted_prepare

config = quickstart.get_config('tiny')
config.dataset.data_dir = data_dir
source = datasets.load_source(config.dataset, config.dataset.train_split)
names = [example['name'].decode() for example in tfds.as_numpy(source)]
with open(os.path.join(out_dir, f'{process_id}.json'), 'w') as f:
  json.dump({'preparations': len(preparations), 'names': names}, f)
