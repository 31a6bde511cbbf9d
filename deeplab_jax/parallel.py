"""Data parallelism: the device mesh and moving batches and results across it.

Training and evaluation both split one global batch over the mesh axis
'data' (every host feeds its own rows) and keep the variables replicated.
This is their shared layer; neither imports the other.
"""

import collections
from typing import Dict, Iterable, Optional, Sequence

import jax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

DATA_AXIS = 'data'


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all devices (of all hosts) with the axis 'data'."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_batch_size(batch_size: int, mesh: Mesh, field: str = 'global_batch_size') -> None:
  if batch_size <= 0 or batch_size % mesh.size:
    raise ValueError(f'config.{field}={batch_size} must be a positive multiple of the number '
                     f'of devices ({mesh.size}): each device gets an equal part of the batch.')


def replicate(tree, mesh: Mesh):
  return jax.device_put(tree, NamedSharding(mesh, P()))


def global_batch(local_batch: Dict[str, np.ndarray], mesh: Mesh) -> Dict[str, jax.Array]:
  """This host's part of the batch → global arrays split over 'data'."""
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
          for key, value in local_batch.items()}


def prefetch_to_devices(batches: Iterable[Dict[str, np.ndarray]], mesh: Mesh,
                        keys: Optional[Sequence[str]] = None, ahead: int = 1):
  """Yields (host batch, its global device batch), `ahead` more already sent.

  The caller dispatches a step on one batch and asks for the next: the host
  then reads and sends a later batch while that step runs, so no step waits
  for the host. `keys` picks what goes to the devices (default: all).
  """
  iterator, queue = iter(batches), collections.deque()

  def send_next():
    batch = next(iterator, None)
    if batch is not None:
      queue.append((batch, global_batch({k: batch[k] for k in keys or batch}, mesh)))

  for _ in range(ahead + 1):
    send_next()
  while queue:
    yield queue.popleft()
    send_next()


def local_rows(array: jax.Array) -> np.ndarray:
  """This host's rows of an array split over 'data', in batch order."""
  shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
  return np.concatenate([np.asarray(s.data) for s in shards])


def sum_over_processes(value) -> np.ndarray:
  """The elementwise sum of a host-side array over all processes (every host gets it)."""
  value = np.asarray(value)
  if jax.process_count() == 1:
    return value
  return np.sum(multihost_utils.process_allgather(value), axis=0)
