"""What the benchmarks share: configs by path, timing, XLA cost, one JSON line.

Timings are minima over repeats (of calls, or of windows of back-to-back
training steps): on a shared machine the minimum is the figure least disturbed
by other processes; the median is reported beside it.
"""

import dataclasses
import json
import os
import resource
import time
from typing import Any, Callable, Dict, Optional, Sequence

from deeplab_jax import config_defaults, host_memory, xla_flags

# As main.py does, before JAX starts its threads and its backend.
host_memory.keep_freed_memory()
xla_flags.add_cpu_flags()

import jax  # pylint: disable=g-import-not-at-top,g-bad-import-order
import numpy as np  # pylint: disable=g-import-not-at-top


def load_config(path: str):
  """`configs/X.py[:arg]` → the config its `get_config(arg)` returns."""
  return config_defaults.load_config(path)


def enable_compilation_cache(directory: Optional[str]) -> None:
  """Persist compiled executables across runs (compile_seconds then drops)."""
  if directory:
    jax.config.update('jax_compilation_cache_dir', directory)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)


def compile_timed(jitted, *args):
  """(compiled executable, seconds spent lowering + compiling)."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return compiled, time.perf_counter() - start


def flops_of(compiled) -> float:
  """FLOPs XLA's cost analysis counts for one call of `compiled` (0 if unknown)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', 0.0))


def time_calls(call: Callable[[], Any], repeats: int, warmup: int = 2) -> Sequence[float]:
  """Wall seconds of `repeats` calls of `call` (each blocked until ready)."""
  for _ in range(warmup):
    jax.block_until_ready(call())
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(call())
    seconds.append(time.perf_counter() - start)
  return seconds


def time_back_to_back(call: Callable[[], Any], calls: int, windows: int = 3,
                      warmup: int = 2) -> Sequence[float]:
  """Mean wall seconds per call, one figure per window of `calls` calls.

  Within a window each call is dispatched without waiting for the last one,
  as the training loop does: the host prepares step n+1 while step n runs."""
  for _ in range(warmup):
    jax.block_until_ready(call())
  seconds = []
  for _ in range(windows):
    start = time.perf_counter()
    for _ in range(calls):
      result = call()
    jax.block_until_ready(result)
    seconds.append((time.perf_counter() - start) / calls)
  return seconds


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_memory() -> Dict[str, Any]:
  """The most device memory in use so far (GPU/TPU), else this process's peak RSS."""
  stats = [device.memory_stats() for device in jax.local_devices()]
  if all(s and 'peak_bytes_in_use' in s for s in stats):
    peak = max(s['peak_bytes_in_use'] for s in stats)
    return {'peak_memory_mb': round(peak / 2**20, 1), 'peak_memory_of': 'device'}
  return {'peak_memory_mb': round(peak_rss_mb(), 1), 'peak_memory_of': 'host_rss'}


def seconds_of(call: Callable[[], Any]):
  """(result, wall seconds of `call` until its result is ready)."""
  start = time.perf_counter()
  result = jax.block_until_ready(call())
  return result, time.perf_counter() - start


def define_model_flags(flags) -> None:
  """The flags both model benchmarks take to change the config's model."""
  flags.DEFINE_integer('output_stride', None, 'Overrides config.model.output_stride.')
  flags.DEFINE_bool('decoder', False, 'Adds the stride-4 decoder (DeepLabv3+) to a config '
                    'without one, e.g. MobileNetV2 to compare with other v3+ ports.')
  flags.DEFINE_enum('dtype', None, ['float32', 'bfloat16'],
                    'Compute dtype (config.model.dtype); parameters stay float32.')
  flags.DEFINE_enum('depthwise_kernel', None, ['shifted', 'conv'],
                    'config.model.depthwise_kernel (default: the fastest for the backend).')
  flags.DEFINE_enum('pointwise_kernel', None, ['matmul', 'conv'],
                    'config.model.pointwise_kernel (default: the fastest for the backend).')


def apply_model_flags(config, flag_values) -> None:
  """`define_model_flags`' values → config.model (a flag left unset keeps the config's)."""
  model = config.model
  if flag_values.output_stride is not None:
    model.output_stride = flag_values.output_stride
  if flag_values.decoder:
    model.decoder_output_stride = 4
  for field in ('dtype', 'depthwise_kernel', 'pointwise_kernel'):
    if getattr(flag_values, field):
      model[field] = getattr(flag_values, field)


def kernels_of(config) -> Dict[str, str]:
  """{'depthwise', 'pointwise'}: how the config's model computes those convs here."""
  from deeplab_jax.model import create_model  # pylint: disable=g-import-not-at-top
  return dataclasses.asdict(create_model(config).kernels)


def environment() -> Dict[str, Any]:
  """What the figures depend on besides the model."""
  return {
      'backend': jax.default_backend(),
      'devices': jax.device_count(),
      'cpu_count': os.cpu_count(),
      'load_average_1min': round(os.getloadavg()[0], 2),
      'jax': jax.__version__,
      'device_kind': jax.local_devices()[0].device_kind,
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
  }


def report(fields: Dict[str, Any], seconds: Sequence[float], images_per_call: int,
           flops_per_call: float, compile_seconds: float, *, init_seconds: float,
           first_call_seconds: float) -> Dict[str, Any]:
  """The benchmark's JSON record; per-image figures use the minimum call time.

  Besides speed: `state_init_seconds` (fresh variables, and optimizer state
  for training, on the devices), `compile_seconds` (lowering + compiling),
  `first_call_seconds` (the first call of the compiled program) and the peak
  memory."""
  best = min(seconds)
  per_image = best / images_per_call
  gflops_per_image = flops_per_call / images_per_call / 1e9
  record = dict(fields)
  record.update(
      seconds_per_call=round(best, 5),
      seconds_per_image=round(per_image, 5),
      images_per_second=round(1.0 / per_image, 3),
      median_seconds_per_image=round(float(np.median(seconds)) / images_per_call, 5),
      gflops_per_image=round(gflops_per_image, 3),
      achieved_gflops=round(gflops_per_image / per_image, 2),
      state_init_seconds=round(init_seconds, 2),
      compile_seconds=round(compile_seconds, 2),
      first_call_seconds=round(first_call_seconds, 3),
      **peak_memory(),
      peak_rss_mb=round(peak_rss_mb(), 1),
      repeats=len(seconds),
  )
  record.update(environment())
  return record


def print_record(record: Dict[str, Any]) -> None:
  print(json.dumps(record), flush=True)


def crop_from_flag(value: Optional[Sequence[str]], default) -> tuple:
  """--crop_size=513 or --crop_size=769,769 → (h, w); else the config's."""
  if not value:
    return tuple(int(s) for s in default)
  sizes = [int(s) for s in value]
  if len(sizes) == 1:
    sizes = sizes * 2
  if len(sizes) != 2 or min(sizes) <= 0:
    raise ValueError(f'--crop_size={",".join(value)}: expected one or two positive sizes.')
  return tuple(sizes)
