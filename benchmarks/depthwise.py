r"""Depthwise-convolution variants on MobileNetV2's layer shapes: one JSON line.

  python benchmarks/depthwise.py [--mode=inference|training] [--batch_size=1]
      [--crop_size=513]

Each variant is timed on every depthwise layer shape of MobileNetV2 (OS 16)
at the crop, interleaved (A, B, A, B, ...) so that load from other processes
hits all variants alike; the minimum per shape is kept and weighted by how
often the shape occurs. `training` times the gradient w.r.t. input and kernel.
Every variant is first checked against the grouped `lax.conv`.
"""

import functools
import os
import time

from absl import app
from absl import flags

import common  # pylint: disable=g-bad-import-order

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
from jax import lax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from deeplab_jax import layers  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_enum('mode', 'inference', ['inference', 'training'], 'Forward or gradient.')
flags.DEFINE_integer('batch_size', 1, 'Batch.')
flags.DEFINE_integer('crop_size', 513, 'Square crop.')
flags.DEFINE_integer('repeats', 7, 'Interleaved rounds (the minimum is kept).')
flags.DEFINE_list('variants', None, 'Subset of variants (default: all for the mode).')


def grouped_conv(x, kernel, stride, rate, padding):
  channels = kernel.shape[2]
  return lax.conv_general_dilated(
      x, kernel.reshape(3, 3, 1, channels), stride, padding, rhs_dilation=rate,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=channels)


def shifted_autodiff(x, kernel, stride, rate, padding):
  """The shifted sum without the custom VJP (autodiff saves each tap)."""
  return layers._sum_of_taps(layers._pad_spatial(x, tuple(padding)), kernel, stride, rate)  # pylint: disable=protected-access


def shifted_barrier(x, kernel, stride, rate, padding):
  """The padded input forced into memory before the taps are read."""
  padded = lax.optimization_barrier(layers._pad_spatial(x, tuple(padding)))  # pylint: disable=protected-access
  return layers._sum_of_taps(padded, kernel, stride, rate)  # pylint: disable=protected-access


def phase_split(x, kernel, stride, rate, padding):
  """Strided taps read from a [N, H/s, s, W/s, s, C] view: unit-stride slices."""
  padded = layers._pad_spatial(x, tuple(padding))  # pylint: disable=protected-access
  if stride == (1, 1):
    return layers._sum_of_taps(padded, kernel, stride, rate)  # pylint: disable=protected-access
  n, h, w, c = padded.shape
  extra = ((-h) % stride[0], (-w) % stride[1])
  padded = jnp.pad(padded, ((0, 0), (0, extra[0]), (0, extra[1]), (0, 0)))
  view = padded.reshape(n, (h + extra[0]) // stride[0], stride[0],
                        (w + extra[1]) // stride[1], stride[1], c)
  out_h = (h - 2 * rate[0] - 1) // stride[0] + 1
  out_w = (w - 2 * rate[1] - 1) // stride[1] + 1
  out = 0
  for i in range(3):
    for j in range(3):
      a, b = i * rate[0], j * rate[1]
      out = out + view[:, a // stride[0]:a // stride[0] + out_h, a % stride[0],
                       b // stride[1]:b // stride[1] + out_w, b % stride[1]] * kernel[i, j, :, 0]
  return out


def stacked_einsum(x, kernel, stride, rate, padding):
  """im2col: the nine taps stacked, then one contraction with the kernel."""
  padded = layers._pad_spatial(x, tuple(padding))  # pylint: disable=protected-access
  out_hw = tuple((padded.shape[1 + a] - 2 * rate[a] - 1) // stride[a] + 1 for a in range(2))
  taps = jnp.stack([layers._tap(padded, i, j, out_hw, stride, rate)  # pylint: disable=protected-access
                    for i in range(3) for j in range(3)])
  return jnp.einsum('tnhwc,tc->nhwc', taps, kernel.reshape(9, -1))


VARIANTS = {
    'grouped_conv': grouped_conv,
    # The project's choice on CPU.
    'shifted': functools.partial(layers.depthwise_conv, implementation='shifted'),
    'shifted_autodiff': shifted_autodiff,
    'shifted_barrier': shifted_barrier,
    'phase_split': phase_split,
    'stacked_einsum': stacked_einsum,
}


def mobilenet_v2_shapes(crop: int):
  """(size, channels, stride, rate, occurrences) of MobileNetV2's depthwise layers, OS 16."""
  s2, s4, s8, s16 = (-(-crop // f) for f in (2, 4, 8, 16))
  return [(s2, 32, 1, 1, 1), (s2, 96, 2, 1, 1), (s4, 144, 1, 1, 1), (s4, 144, 2, 1, 1),
          (s8, 192, 1, 1, 2), (s8, 192, 2, 1, 1), (s16, 384, 1, 1, 4), (s16, 576, 1, 1, 2),
          (s16, 576, 1, 2, 1), (s16, 960, 1, 2, 3)]


def build(variant, shape, mode, batch):
  size, channels, stride, rate, _ = shape
  x = jax.random.normal(jax.random.key(0), (batch, size, size, channels))
  kernel = jax.random.normal(jax.random.key(1), (3, 3, channels, 1))
  stride, rate = (stride, stride), (rate, rate)
  padding = layers.resolve_padding('SAME', x.shape, (3, 3), stride, rate)
  forward = lambda x, k: variant(x, k, stride, rate, padding)
  if mode == 'inference':
    return jax.jit(forward), (x, kernel)
  out = jax.eval_shape(forward, x, kernel)
  weights = jax.random.normal(jax.random.key(2), out.shape)
  return jax.jit(jax.grad(lambda x, k: jnp.vdot(forward(x, k), weights), argnums=(0, 1))), (
      x, kernel)


def main(argv):
  del argv
  names = FLAGS.variants or [n for n in VARIANTS
                             if FLAGS.mode == 'inference' or n != 'stacked_einsum']
  total = dict.fromkeys(names, 0.0)
  per_shape = []
  for shape in mobilenet_v2_shapes(FLAGS.crop_size):
    functions = {}
    for name in names:
      fn, args = build(VARIANTS[name], shape, FLAGS.mode, FLAGS.batch_size)
      functions[name] = fn
    reference = jax.tree.leaves(functions.get('grouped_conv', build(
        grouped_conv, shape, FLAGS.mode, FLAGS.batch_size)[0])(*args))
    for name, fn in functions.items():
      for got, want in zip(jax.tree.leaves(fn(*args)), reference):
        scale = float(jnp.abs(want).max())
        if float(jnp.abs(got - want).max()) > 1e-4 * scale:
          raise AssertionError(f'{name} differs from the grouped conv on {shape}.')
    best = dict.fromkeys(names, np.inf)
    for _ in range(FLAGS.repeats):
      for name, fn in functions.items():
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best[name] = min(best[name], time.perf_counter() - start)
    for name in names:
      total[name] += best[name] * shape[-1]
    per_shape.append({'shape': shape[:4], 'count': shape[4],
                      'ms': {n: round(best[n] * 1e3, 3) for n in names}})
  flops = 2 * 9 * sum(FLAGS.batch_size * (-(-s // st)) ** 2 * c * k
                      for s, c, st, _, k in mobilenet_v2_shapes(FLAGS.crop_size))
  if FLAGS.mode == 'training':
    flops *= 3  # Forward, input gradient and kernel gradient.
  common.print_record({
      'benchmark': 'depthwise', 'mode': FLAGS.mode, 'batch_size': FLAGS.batch_size,
      'crop_size': FLAGS.crop_size,
      'total_ms': {n: round(t * 1e3, 2) for n, t in total.items()},
      'gflops_per_second': {n: round(flops / t / 1e9, 2) for n, t in total.items()},
      'per_shape': per_shape, 'load_average_1min': round(os.getloadavg()[0], 2),
  })


if __name__ == '__main__':
  app.run(main)
