"""Building blocks shared by every backbone and head.

Variables are named exactly as in the original TF-slim graph (`weights`,
`depthwise_weights`, `biases`, `BatchNorm/{gamma,beta,moving_mean,
moving_variance}`), and depthwise kernels keep TF's [kh, kw, C, 1] layout, so a
Flax variable path *is* the model-zoo variable name and importing a checkpoint
is a rename-free copy.
"""

import dataclasses
import functools
import math
import operator
import zlib
from typing import Callable, Mapping, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

Rate = Union[int, Tuple[int, int]]
Padding = Sequence[Tuple[int, int]]

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')


@dataclasses.dataclass(frozen=True)
class BatchNormSettings:
  """Batch-norm constants of one part of the network (they differ per backbone)."""
  decay: float
  epsilon: float
  # Mesh axis to average batch statistics over (sync BN), or None.
  axis_name: Optional[str] = None
  # γ's starting value: 0 for the last batch norm of a residual branch makes
  # the unit start as the identity (`zero_init_residual`).
  initial_gamma: float = 1.0


def _pair(value: Rate) -> Tuple[int, int]:
  return (value, value) if isinstance(value, int) else tuple(value)


def same_padding(size: int, kernel: int, stride: int, rate: int) -> Tuple[int, int]:
  """TF 'SAME' padding of one axis (the extra pixel goes at the end)."""
  effective = (kernel - 1) * rate + 1
  out = -(-size // stride)
  total = max((out - 1) * stride + effective - size, 0)
  return total // 2, total - total // 2


def fixed_padding(kernel: int, rate: int) -> Tuple[int, int]:
  """The symmetric explicit padding of slim's `conv2d_same` for strided convs."""
  total = (kernel - 1) * rate
  return total // 2, total - total // 2


def resolve_padding(padding: str, shape, kernel, stride, rate) -> Padding:
  """'SAME' (TF semantics) or 'FIXED' (explicit symmetric) → explicit pairs."""
  if padding == 'SAME':
    return [same_padding(shape[1 + i], kernel[i], stride[i], rate[i]) for i in range(2)]
  if padding == 'FIXED':
    return [fixed_padding(kernel[i], rate[i]) for i in range(2)]
  raise ValueError(f'Unknown padding {padding!r}; expected SAME or FIXED.')


# --- Initialisers ------------------------------------------------------------
# Each also draws its values on the host with NumPy (`host`), so that training
# builds fresh variables without compiling a program of hundreds of random
# initialisers (6-9 s on CPU; a GPU's whole state init took 28 s).

# The standard deviation of a standard normal truncated to [-2, 2].
_TRUNCATED_STDDEV = 0.87962566103423978


def _host_truncated_normal(rng: np.random.Generator, shape, scale: float) -> np.ndarray:
  """`scale` times standard normal values redrawn until all lie in [-2, 2]."""
  values = rng.standard_normal(shape, dtype=np.float32)
  while True:
    outside = np.abs(values) >= 2.0
    count = int(outside.sum())
    if not count:
      return values * np.float32(scale)
    values[outside] = rng.standard_normal(count, dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class TruncatedNormal:
  """slim's `truncated_normal_initializer(stddev)` as a Flax initialiser."""
  stddev: float

  def __call__(self, key, shape, dtype=jnp.float32):
    return nn.initializers.truncated_normal(self.stddev)(key, shape, dtype)

  def host(self, rng: np.random.Generator, shape) -> np.ndarray:
    return _host_truncated_normal(rng, shape, self.stddev)


@dataclasses.dataclass(frozen=True)
class VarianceScaling:
  """`jax.nn.initializers.variance_scaling` of a conv kernel [..., in, out]."""
  scale: float
  mode: str  # 'fan_in' or 'fan_avg'.
  distribution: str  # 'truncated_normal' or 'uniform'.

  def __call__(self, key, shape, dtype=jnp.float32):
    return nn.initializers.variance_scaling(self.scale, self.mode, self.distribution)(
        key, shape, dtype)

  def host(self, rng: np.random.Generator, shape) -> np.ndarray:
    receptive = math.prod(shape[:-2])
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    variance = self.scale / (fan_in if self.mode == 'fan_in' else (fan_in + fan_out) / 2)
    if self.distribution == 'uniform':
      limit = math.sqrt(3.0 * variance)
      return rng.uniform(-limit, limit, shape).astype(np.float32)
    return _host_truncated_normal(rng, shape, math.sqrt(variance) / _TRUNCATED_STDDEV)


GLOROT_UNIFORM = VarianceScaling(1.0, 'fan_avg', 'uniform')
HE_NORMAL = VarianceScaling(2.0, 'fan_in', 'truncated_normal')

# The variables that start constant (batch norm's, the logits' biases) and
# their values, by variable name; kernels start random (`kernel_init`).
INITIAL_CONSTANTS = {'gamma': 1.0, 'beta': 0.0, 'moving_mean': 0.0, 'moving_variance': 1.0,
                     'biases': 0.0}


def _constant(name: str):
  return nn.initializers.constant(INITIAL_CONSTANTS[name])


def host_initial_variables(module: nn.Module, sample, seed: int, **kwargs):
  """`module.init(key, sample, **kwargs)`'s variables drawn on the host, or None.

  Shapes come from `jax.eval_shape` (nothing is compiled); each kernel is
  drawn by its module's `kernel_init.host` from a NumPy generator seeded by
  (seed, the variable's name), the rest from `INITIAL_CONSTANTS`. The same on
  every host and backend. None if some variable has neither (e.g. a kernel
  initialiser without `host`): the caller then initialises on the device.
  """
  kernel_inits, gammas = {}, {}

  def record(next_fun, args, call_kwargs, context):
    if context.method_name == '__call__':
      path, init = tuple(context.module.path), getattr(context.module, 'kernel_init', None)
      if hasattr(init, 'host'):
        kernel_inits[path] = init
      if isinstance(context.module, BatchNorm):
        gammas[path] = context.module.settings.initial_gamma
    return next_fun(*args, **call_kwargs)

  with nn.intercept_methods(record):
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), sample, **kwargs))
  leaves, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  values = []
  for path, leaf in leaves:
    keys = tuple(str(k.key) for k in path)
    name = keys[-1]
    init = kernel_inits.get(keys[1:-1]) if name in ('weights', 'depthwise_weights') else None
    if init is not None:
      rng = np.random.default_rng([seed, zlib.crc32('/'.join(keys[1:]).encode())])
      values.append(init.host(rng, leaf.shape).astype(leaf.dtype))
    elif name == 'gamma' and keys[1:-1] in gammas:
      values.append(np.full(leaf.shape, gammas[keys[1:-1]], leaf.dtype))
    elif name in INITIAL_CONSTANTS:
      values.append(np.full(leaf.shape, INITIAL_CONSTANTS[name], leaf.dtype))
    else:
      return None
  return jax.tree_util.tree_unflatten(treedef, values)


DEPTHWISE_KERNELS = ('shifted', 'conv')
POINTWISE_KERNELS = ('matmul', 'conv')


@dataclasses.dataclass(frozen=True)
class Kernels:
  """How depthwise and 1x1 convs are computed: same function, different speed.

  A module field (like `dtype`) so that jit's cache sees the choice. The
  default, plain `lax.conv` for both, is what every backend and runtime runs
  (TFLite rejects the matmul form of a 1x1 conv: it fuses the reshapes into a
  rank-4 batch matmul); `create_model` picks the fastest for the backend.
  """
  # 'shifted': a fused sum of strided slices (XLA:CPU turns a grouped conv into
  # a dense one with a block-diagonal kernel, C times the work, 0.2 GFLOP/s
  # measured); 'conv': a grouped `lax.conv` (TPU/GPU have real depthwise kernels).
  depthwise: str = 'conv'
  # 'matmul': a 2-D matmul (XLA:CPU's is 1.1-2.5x faster than its 1x1 conv,
  # benchmarks/inference.py); 'conv': `lax.conv`.
  pointwise: str = 'conv'

  def __post_init__(self):
    if self.depthwise not in DEPTHWISE_KERNELS:
      raise ValueError(f'Kernels.depthwise={self.depthwise!r}: expected one of '
                       f'{DEPTHWISE_KERNELS}.')
    if self.pointwise not in POINTWISE_KERNELS:
      raise ValueError(f'Kernels.pointwise={self.pointwise!r}: expected one of '
                       f'{POINTWISE_KERNELS}.')


def fastest_kernels(backend: str) -> Kernels:
  """The measured fastest choice: shifted depthwise and matmul 1x1 on CPU only."""
  if backend == 'cpu':
    return Kernels(depthwise='shifted', pointwise='matmul')
  return Kernels(depthwise='conv', pointwise='conv')


def depthwise_conv(x, kernel, stride, rate, padding: Padding, accumulation_dtype=None, *,
                   implementation: str):
  """Depthwise conv of NHWC `x` with a TF-layout kernel [kh, kw, C, 1].

  The result has `accumulation_dtype` (default: x's dtype); `implementation`
  is one of `DEPTHWISE_KERNELS` (see `Kernels`)."""
  kh, kw, channels, _ = kernel.shape
  accumulation_dtype = accumulation_dtype or x.dtype
  if implementation not in DEPTHWISE_KERNELS:
    raise ValueError(f'depthwise implementation={implementation!r}: expected one of '
                     f'{DEPTHWISE_KERNELS}.')
  if implementation == 'conv':
    return lax.conv_general_dilated(
        x, kernel.reshape(kh, kw, 1, channels), stride, padding,
        rhs_dilation=rate, dimension_numbers=_DIMENSION_NUMBERS,
        feature_group_count=channels, preferred_element_type=accumulation_dtype)
  x, kernel = x.astype(accumulation_dtype), kernel.astype(accumulation_dtype)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  x, kernel = _vary_alike(x, kernel)
  return _shifted_depthwise(x, kernel, _pair(stride), _pair(rate), padding)


def pointwise_matmul(x, kernel):
  """x [N, H, W, C] times kernel [C, D] as one 2-D matmul, accumulated in float32.

  2-D rather than a rank-4 dot_general: XLA:CPU runs it fastest."""
  n, h, w, c = x.shape
  y = jnp.dot(x.reshape(n * h * w, c), kernel, preferred_element_type=jnp.float32)
  return y.reshape(n, h, w, kernel.shape[-1])


def _varying_axes(value) -> frozenset:
  return jax.typeof(value).manual_axis_type.varying


def _vary_alike(*values):
  """Marks all values as varying over the shard_map axes any of them varies over.

  Under shard_map a replicated kernel meets a per-device input; a custom VJP
  must return cotangents of its inputs' exact types, so the kernel is made
  per-device first (autodiff then sums its gradient over devices)."""
  axes = frozenset().union(*(_varying_axes(v) for v in values))
  return tuple(lax.pcast(v, tuple(axes - _varying_axes(v)), to='varying')
               if axes - _varying_axes(v) else v for v in values)


def _pad_spatial(x, padding):
  return jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))


def _tap(x, i, j, out_hw, stride, rate):
  """The input pixels that kernel tap (i, j) meets, [N, out_h, out_w, C]."""
  start = (0, i * rate[0], j * rate[1], 0)
  limit = (x.shape[0], start[1] + (out_hw[0] - 1) * stride[0] + 1,
           start[2] + (out_hw[1] - 1) * stride[1] + 1, x.shape[3])
  return lax.slice(x, start, limit, (1, stride[0], stride[1], 1))


def _sum_of_taps(padded, kernel, stride, rate):
  """Valid depthwise correlation of an already padded input: one fused loop."""
  kh, kw = kernel.shape[:2]
  out_hw = tuple((padded.shape[1 + a] - ((k - 1) * rate[a] + 1)) // stride[a] + 1
                 for a, k in enumerate((kh, kw)))
  out = None
  for i in range(kh):
    for j in range(kw):
      tap = _tap(padded, i, j, out_hw, stride, rate) * kernel[i, j, :, 0]
      out = tap if out is None else out + tap
  return out


# A custom VJP, because autodiff of the slices saves every tap's slice as a
# residual: nine copies of the input written in the forward pass (measured 40%
# of a MobileNetV2 train step). Here only x is kept, and both gradients are
# again fused shifted sums.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _shifted_depthwise(x, kernel, stride, rate, padding):
  return _sum_of_taps(_pad_spatial(x, padding), kernel, stride, rate)


def _shifted_depthwise_forward(x, kernel, stride, rate, padding):
  return _shifted_depthwise(x, kernel, stride, rate, padding), (x, kernel)


def _shifted_depthwise_backward(stride, rate, padding, residuals, grad):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  # d/dx: the cotangent dilated by the stride, padded so that a stride-1
  # correlation with the flipped kernel lands on x's pixels (negative high
  # padding drops rows/columns no tap reached).
  config = [(0, 0, 0)]
  for axis, k in ((1, kh), (2, kw)):
    reach = (k - 1) * rate[axis - 1]
    low = reach - padding[axis - 1][0]
    dilated = (grad.shape[axis] - 1) * stride[axis - 1] + 1
    config.append((low, x.shape[axis] + reach - low - dilated, stride[axis - 1] - 1))
  config.append((0, 0, 0))
  spread = lax.pad(grad, jnp.zeros((), grad.dtype), config)
  grad_x = _sum_of_taps(spread, kernel[::-1, ::-1], (1, 1), rate)
  grad_kernel = _kernel_gradient(_pad_spatial(x, padding), grad, (kh, kw), stride, rate)
  grad_kernel = grad_kernel.reshape(kernel.shape)
  return grad_x.astype(x.dtype), grad_kernel.astype(kernel.dtype)


# Batch-times-rows terms summed per loop step of the kernel gradient: enough
# work per step to hide the loop's overhead, few enough that a step's inputs
# stay in cache (16 measured best; 2x faster than 1 MB blocks of reductions).
_TERMS_PER_STEP = 16


def _kernel_gradient(padded, grad, kernel_hw, stride, rate):
  """[kh * kw, C]: per tap, the sum over batch and pixels of its input times grad.

  A loop over blocks of output rows whose body sums whole [out_w, C] rows with
  plain adds: XLA:CPU fuses that into one pass over the block. Written as
  reductions instead, it first copies every tap's input slice out and then
  reduces it in a separate library call: a third of a MobileNetV2 training
  step on CPU."""
  kh, kw = kernel_hw
  n, out_h, out_w, channels = grad.shape
  rows = max(1, min(out_h, _TERMS_PER_STEP // n))
  blocks = -(-out_h // rows)
  # Whole blocks: zero rows of grad at the end contribute nothing.
  grad = jnp.pad(grad, ((0, 0), (0, blocks * rows - out_h), (0, 0), (0, 0)))
  span = (rows - 1) * stride[0] + (kh - 1) * rate[0] + 1
  needed = (blocks - 1) * rows * stride[0] + span
  padded = jnp.pad(padded, ((0, 0), (0, max(needed - padded.shape[1], 0)), (0, 0), (0, 0)))

  def add_block(b, total):
    grad_rows = lax.dynamic_slice_in_dim(grad, b * rows, rows, axis=1)
    input_rows = lax.dynamic_slice_in_dim(padded, b * rows * stride[0], span, axis=1)
    per_tap = []
    for i in range(kh):
      for j in range(kw):
        product = _tap(input_rows, i, j, (rows, out_w), stride, rate) * grad_rows
        per_tap.append(functools.reduce(
            operator.add, (product[m, r] for m in range(n) for r in range(rows))))
    return total + jnp.stack(per_tap)

  zeros, _ = _vary_alike(jnp.zeros((kh * kw, out_w, channels), grad.dtype), grad)  # For shard_map.
  return jnp.sum(lax.fori_loop(0, blocks, add_block, zeros), axis=1)


_shifted_depthwise.defvjp(_shifted_depthwise_forward, _shifted_depthwise_backward)


class BatchNorm(nn.Module):
  """Batch norm with TF's conventions and variable names.

  In training mode it normalises with the (cross-device, if `axis_name`) batch
  moments and updates the moving variance with the *unbiased* batch variance,
  as TF's fused batch norm does. Otherwise it uses the moving statistics.
  """
  settings: BatchNormSettings

  @nn.compact
  def __call__(self, x, train: bool):
    channels = x.shape[-1]
    gamma = self.param('gamma', nn.initializers.constant(self.settings.initial_gamma),
                       (channels,), jnp.float32)
    beta = self.param('beta', _constant('beta'), (channels,), jnp.float32)
    moving_mean = self.variable('batch_stats', 'moving_mean', _constant('moving_mean'), None,
                                (channels,), jnp.float32)
    moving_var = self.variable('batch_stats', 'moving_variance', _constant('moving_variance'),
                               None, (channels,), jnp.float32)
    scale, shift = self.scale_and_shift(x, train, gamma, beta, moving_mean, moving_var)
    return (x * scale + shift).astype(x.dtype)

  def scale_and_shift(self, x, train, gamma, beta, moving_mean, moving_var):
    """The per-channel affine map this layer applies, in float32."""
    if train:
      xf = x.astype(jnp.float32)
      moments = jnp.stack([jnp.mean(xf, axis=(0, 1, 2)), jnp.mean(xf * xf, axis=(0, 1, 2))])
      count = x.shape[0] * x.shape[1] * x.shape[2]
      if self.settings.axis_name is not None:
        moments = lax.pmean(moments, self.settings.axis_name)
        count *= lax.psum(1, self.settings.axis_name)
      mean, mean_sq = moments[0], moments[1]
      var = jnp.maximum(mean_sq - mean * mean, 0.0)
      if not self.is_initializing():
        decay = self.settings.decay
        unbiased = var * (count / max(count - 1, 1))
        moving_mean.value = decay * moving_mean.value + (1 - decay) * mean
        moving_var.value = decay * moving_var.value + (1 - decay) * unbiased
    else:
      mean, var = moving_mean.value, moving_var.value
    scale = gamma * lax.rsqrt(var + self.settings.epsilon)
    return scale, beta - mean * scale


class ConvBN(nn.Module):
  """Convolution without bias → batch norm → optional activation.

  `depthwise=True` makes it a depthwise conv (multiplier 1) whose variable is
  `depthwise_weights`. At inference the batch norm is folded into the kernel.
  """
  features: Optional[int]
  bn: BatchNormSettings
  kernel_size: int = 1
  stride: Rate = 1
  rate: Rate = 1
  padding: str = 'SAME'
  depthwise: bool = False
  activation: Optional[Callable] = nn.relu
  kernel_init: Callable = GLOROT_UNIFORM
  dtype: jnp.dtype = jnp.float32
  kernels: Kernels = Kernels()

  @nn.compact
  def __call__(self, x, train: bool = False):
    k = (self.kernel_size, self.kernel_size)
    stride, rate = _pair(self.stride), _pair(self.rate)
    channels = x.shape[-1]
    if self.depthwise:
      kernel = self.param('depthwise_weights', self.kernel_init, (*k, channels, 1), jnp.float32)
    else:
      kernel = self.param('weights', self.kernel_init, (*k, channels, self.features), jnp.float32)
    padding = resolve_padding(self.padding, x.shape, k, stride, rate)
    norm = BatchNorm(self.bn, name='BatchNorm')

    def convolve(w):
      x_, w_ = x.astype(self.dtype), w.astype(self.dtype)
      if self.depthwise:
        return depthwise_conv(x_, w_, stride, rate, padding, jnp.float32,
                              implementation=self.kernels.depthwise)
      if k == (1, 1) and self.kernels.pointwise == 'matmul':
        return pointwise_matmul(x_[:, ::stride[0], ::stride[1]], w_[0, 0])
      # Accumulate in float32 whatever the compute dtype (bfloat16 sums drift).
      return lax.conv_general_dilated(x_, w_, stride, padding, rhs_dilation=rate,
                                      dimension_numbers=_DIMENSION_NUMBERS,
                                      preferred_element_type=jnp.float32)

    if train or self.is_initializing():
      y = norm(convolve(kernel), train=train)
    else:
      # Fold BN into the kernel: one pass over the output instead of two.
      scale, shift = _bn_affine(norm, channels if self.depthwise else self.features)
      folded = kernel * (scale[:, None] if self.depthwise else scale)
      y = convolve(folded) + shift
    y = self.activation(y) if self.activation is not None else y
    return y.astype(self.dtype)


def _bn_affine(norm: BatchNorm, channels: int):
  """The inference-time (scale, shift) of a bound BatchNorm submodule."""
  mean = norm.get_variable('batch_stats', 'moving_mean')
  var = norm.get_variable('batch_stats', 'moving_variance')
  gamma = norm.get_variable('params', 'gamma')
  beta = norm.get_variable('params', 'beta')
  if mean is None or gamma is None:
    raise ValueError(f'Batch norm {norm.name} has no variables ({channels} channels).')
  scale = gamma * lax.rsqrt(var + norm.settings.epsilon)
  return scale, beta - mean * scale


def scan_units(parent: nn.Module, unit: nn.Module, names: Sequence[str], x, train: bool,
               remat: bool = False):
  """x through identical units (`unit` returns (y, aux)) as one `lax.scan`.

  The same function as calling `unit` named `names[0]`, `names[1]`, ... of
  `parent` one after another (aux dropped), but XLA compiles one unit instead
  of all: Xception-65's 16 middle-flow units were a third of its train step's
  compile time. (MobileNetV2's runs of 2-3 identical units did not compile
  faster as scans, once measured.) The variables keep their own names: they
  are stacked here, and updated batch statistics are written back per unit.
  `unit` is unbound (`parent=None`); call this only when `parent` is not
  initialising. `remat` rematerialises each unit in the backward pass.
  """
  variables = parent.variables
  collections = [c for c in ('params', 'batch_stats') if c in variables]
  stacked = {c: jax.tree.map(lambda *leaves: jnp.stack(leaves),
                             *[variables[c][name] for name in names]) for c in collections}
  update_stats = train and parent.is_mutable_collection('batch_stats')

  def body(y, unit_variables):
    if update_stats:
      (y, _), updates = unit.apply(unit_variables, y, train, mutable=['batch_stats'])
      return y, updates['batch_stats']
    (y, _) = unit.apply(unit_variables, y, train)
    return y, None

  if remat:
    body = jax.checkpoint(body)
  x, new_stats = jax.lax.scan(body, x, stacked)
  if update_stats:
    for index, name in enumerate(names):
      _put_collection(parent.scope.push(name, reuse=True), 'batch_stats',
                      jax.tree.map(lambda leaf, i=index: leaf[i], new_stats))
  return x


def _put_collection(scope, collection: str, tree) -> None:
  """Writes a nested dict of values into `scope` and its sub-scopes."""
  for key, value in tree.items():
    if isinstance(value, Mapping):
      _put_collection(scope.push(key, reuse=True), collection, value)
    else:
      scope.put_variable(collection, key, value)


def split_separable_conv(parent_name: str, features: int, bn: BatchNormSettings,
                         rate: Rate = 1, dtype=jnp.float32, kernels: Kernels = Kernels()):
  """The original's `split_separable_conv2d` as a (depthwise, pointwise) pair.

  Depthwise conv-BN-ReLU then 1x1 conv-BN-ReLU, in sibling scopes
  `<parent_name>_depthwise` and `<parent_name>_pointwise` of the calling module
  (used by ASPP, the decoder and the Dense Prediction Cell)."""
  depthwise = ConvBN(None, bn, kernel_size=3, rate=rate, depthwise=True,
                     kernel_init=TruncatedNormal(0.33), dtype=dtype, kernels=kernels,
                     name=f'{parent_name}_depthwise')
  pointwise = ConvBN(features, bn, kernel_init=TruncatedNormal(0.06),
                     dtype=dtype, kernels=kernels, name=f'{parent_name}_pointwise')
  return depthwise, pointwise


class Conv2DWithBias(nn.Module):
  """The logits layer: a plain conv with `weights` and `biases`, nothing else."""
  features: int
  kernel_size: int = 1
  kernel_init: Callable = TruncatedNormal(0.01)
  kernels: Kernels = Kernels()

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param('weights', self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    bias = self.param('biases', _constant('biases'), (self.features,), jnp.float32)
    x = x.astype(jnp.float32)
    if k == 1 and self.kernels.pointwise == 'matmul':
      return pointwise_matmul(x, kernel[0, 0]) + bias
    padding = resolve_padding('SAME', x.shape, (k, k), (1, 1), (1, 1))
    y = lax.conv_general_dilated(x, kernel, (1, 1), padding,
                                 dimension_numbers=_DIMENSION_NUMBERS)
    return y + bias
