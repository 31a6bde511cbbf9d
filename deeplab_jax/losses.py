"""Training loss, weight decay and gradient multipliers of the original DeepLab.

The cross-entropy comes in two pieces, a weighted sum and a count of the
pixels that carry weight, because under `jax.shard_map` the loss has to be
`psum(sum) / psum(count)` to be the mean over the global batch (a per-device
mean there gives gradients N times too large). `cross_entropy_loss` is the
single-device quotient and reproduces the original's value exactly.

Parameter pytrees are nested dicts whose keys joined with '/' are the TF
variable names (e.g. `logits/semantic/biases`), so the original's name-based
rules for weight decay and gradient multipliers apply unchanged.
"""

from typing import Any, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from deeplab_jax import variables as variables_lib
from deeplab_jax.resize import resize_bilinear, resize_nearest

# Scopes the original treats as "last layers" (matched as substrings).
LAST_LAYER_SCOPES = ('logits', 'image_pooling', 'aspp', 'concat_projection', 'decoder',
                     'meta_architecture')


def _labels_nhw(labels: jnp.ndarray) -> jnp.ndarray:
  if labels.ndim == 4 and labels.shape[-1] == 1:
    labels = labels[..., 0]
  if labels.ndim != 3:
    raise ValueError(f'labels must be [B, H, W] or [B, H, W, 1], got shape {labels.shape}.')
  return labels


def _top_k_count(num_pixels: int, top_k_percent_pixels: float, hard_example_mining_step: int,
                 step) -> jnp.ndarray:
  """How many of the hardest pixels to keep; float32 arithmetic like the original."""
  pixels = np.float32(num_pixels)
  if hard_example_mining_step == 0:
    return int(np.float32(top_k_percent_pixels) * pixels)
  if step is None:
    raise ValueError('hard_example_mining_step > 0 needs the training step (step=...).')
  ratio = jnp.minimum(
      jnp.float32(1.0),
      jnp.asarray(step, jnp.float32) / jnp.float32(hard_example_mining_step))
  fraction = ratio * jnp.float32(top_k_percent_pixels) + jnp.float32(1.0) - ratio
  return (fraction * pixels).astype(jnp.int32)


def cross_entropy_sums(logits: jnp.ndarray,
                       labels: jnp.ndarray,
                       *,
                       num_classes: int,
                       ignore_label: int = 255,
                       upsample_logits: bool = True,
                       top_k_percent_pixels: float = 1.0,
                       hard_example_mining_step: int = 0,
                       step=None,
                       loss_weight: float = 1.0,
                       label_weights: Optional[Sequence[float]] = None
                      ) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """Weighted softmax cross-entropy of a local batch as (loss_sum, count).

  Args:
    logits: [B, h, w, C] at the logits stride (any float dtype; computed in f32).
    labels: [B, H, W] or [B, H, W, 1] integer class ids; `ignore_label` pixels
      get weight 0.
    num_classes: C; labels outside [0, C) other than the ignore label have an
      all-zero one-hot, as in TF, and so contribute nothing to the sum.
    ignore_label: label value to leave out of the loss.
    upsample_logits: True resizes the logits up to the label size (bilinear,
      align corners); False resizes the labels down to the logits size
      (nearest, align corners).
    top_k_percent_pixels: fraction p of the hardest pixels to keep; 1.0 keeps all.
    hard_example_mining_step: M > 0 warms p up from 1 to its value over M steps,
      keeping `int((r*p + 1 - r) * N)` pixels with r = min(1, step / M).
    step: training step (Python int or traced scalar); needed when M > 0.
    loss_weight: weight of every non-ignored pixel.
    label_weights: optional per-class weights (the later original's
      `label_weights`), multiplied into each pixel's weight by its label.

  Returns:
    (loss_sum, count), float32 scalars. With p = 1, count is the number of
    pixels with non-zero weight; with p < 1 it is the number of non-zero losses
    among the top k, where k counts all B*H*W pixels including ignored ones.
    The original selects the top k per clone; here it is per local batch.
  """
  labels = _labels_nhw(labels)
  if logits.ndim != 4 or logits.shape[0] != labels.shape[0]:
    raise ValueError(f'logits must be [B, h, w, C] with the labels\' batch {labels.shape[0]}, '
                     f'got shape {logits.shape}.')
  if logits.shape[-1] != num_classes:
    raise ValueError(f'logits have {logits.shape[-1]} channels but num_classes={num_classes}.')
  logits = logits.astype(jnp.float32)
  if upsample_logits:
    logits = resize_bilinear(logits, labels.shape[1:3])
  else:
    labels = resize_nearest(labels, logits.shape[1:3])

  labels = labels.reshape(-1)
  logits = logits.reshape(-1, num_classes)
  in_range = (labels >= 0) & (labels < num_classes)
  safe_labels = jnp.where(in_range, labels, 0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  # A one-hot sum, not take_along_axis: its gradient is then elementwise
  # rather than a scatter, which XLA:CPU runs an element at a time.
  one_hot = safe_labels[:, None] == jnp.arange(num_classes)
  pixel_losses = -jnp.sum(jnp.where(one_hot, log_probs, 0.0), axis=-1)
  # A label outside [0, C) has an all-zero one-hot in TF, hence zero loss.
  pixel_losses = jnp.where(in_range, pixel_losses, 0.0)

  weights = jnp.where(labels != ignore_label, jnp.float32(loss_weight), jnp.float32(0.0))
  if label_weights is not None:
    if len(label_weights) != num_classes:
      raise ValueError(f'label_weights has {len(label_weights)} entries, '
                       f'expected num_classes={num_classes}.')
    weights = weights * jnp.asarray(label_weights, jnp.float32)[safe_labels]
  weighted = pixel_losses * weights

  if top_k_percent_pixels == 1.0:
    return jnp.sum(weighted), jnp.sum((weights != 0).astype(jnp.float32))
  if not 0.0 < top_k_percent_pixels < 1.0:
    raise ValueError(f'top_k_percent_pixels must be in (0, 1], got {top_k_percent_pixels}.')

  # Losses are >= 0, so the non-zero ones come first in descending order and
  # ties at the cut-off do not change the sum or the count.
  num_pixels = weighted.shape[0]
  k = _top_k_count(num_pixels, top_k_percent_pixels, hard_example_mining_step, step)
  if isinstance(k, int):
    top = jax.lax.top_k(weighted, k)[0]
  else:
    ranked = jax.lax.top_k(weighted, num_pixels)[0]
    top = jnp.where(jnp.arange(num_pixels) < k, ranked, 0.0)
  return jnp.sum(top), jnp.sum((top != 0).astype(jnp.float32))


def balanced_class_weights(histogram: Sequence[int]) -> Tuple[float, ...]:
  """Per-class loss weights from the training split's pixel counts per class.

  Median-frequency balancing (Eigen & Fergus): w_c = median(f) / f_c for the
  frequencies f_c of the classes that occur, then scaled so that the mean
  weight over the split's pixels is 1 (w_c = 1 / (K f_c) for K classes that
  occur): the weighted loss keeps the unweighted one's scale, and with it the
  learning rate's meaning. A class that never occurs gets weight 1 (it has no
  pixels to weigh).
  """
  counts = np.asarray(histogram, np.float64)
  if counts.ndim != 1 or np.any(counts < 0) or counts.sum() <= 0:
    raise ValueError(f'Class pixel histogram {counts.tolist()}: expected non-negative counts '
                     'with at least one labelled pixel.')
  present = counts > 0
  frequencies = counts / counts.sum()
  weights = np.ones_like(frequencies)
  weights[present] = 1.0 / (present.sum() * frequencies[present])
  return tuple(float(w) for w in weights)


def cross_entropy_loss(logits: jnp.ndarray, labels: jnp.ndarray, **kwargs) -> jnp.ndarray:
  """The original's loss value: loss_sum / count, or 0 when nothing counts.

  Takes the same arguments as `cross_entropy_sums`. Use it on a single device;
  under `shard_map` divide the psums of `cross_entropy_sums` instead.
  """
  loss_sum, count = cross_entropy_sums(logits, labels, **kwargs)
  return safe_divide(loss_sum, count)


def safe_divide(numerator: jnp.ndarray, denominator: jnp.ndarray) -> jnp.ndarray:
  """numerator / denominator, and 0 (with zero gradient) where denominator is 0."""
  nonzero = denominator != 0
  return jnp.where(nonzero, numerator / jnp.where(nonzero, denominator, 1.0), 0.0)


def _sum_of_squares(leaves) -> jnp.ndarray:
  """sum(x**2) over all leaves, as one reduction of their concatenation.

  One reduction per leaf would be hundreds of separate kernels to compile
  (and launch); the concatenation fuses into the single reduction."""
  if not leaves:
    return jnp.float32(0.0)
  flat = jnp.concatenate([jnp.ravel(jnp.asarray(leaf, jnp.float32)) for leaf in leaves])
  return jnp.sum(jnp.square(flat))


def l2_regularization(params: Any, weight_decay: float) -> jnp.ndarray:
  """`weight_decay * sum(w**2) / 2` over the conv kernels named `weights`.

  Depthwise kernels (`depthwise_weights`), biases and batch-norm gamma/beta are
  not decayed, as in the original. Under `shard_map` add this once to the
  global loss (it is replicated), not per device before a psum.
  """
  kernels = [leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]
             if variables_lib.variable_name(path).split('/')[-1] == 'weights']
  return jnp.float32(weight_decay) * _sum_of_squares(kernels) / 2.0


def global_norm(tree: Any) -> jnp.ndarray:
  """sqrt(sum of all leaves' squares), e.g. the gradient norm (float32)."""
  return jnp.sqrt(_sum_of_squares(jax.tree.leaves(tree)))


def gradient_multipliers(params: Any,
                         last_layer_gradient_multiplier: float = 1.0,
                         last_layers_contain_logits_only: bool = False) -> Any:
  """Per-variable gradient scale factors (a pytree of floats shaped like params).

  Substring rules on the variable name, as in the original: `biases` gets x2;
  anything under the last layers gets x `last_layer_gradient_multiplier`
  (biases there x2 times that). Last layers are `LAST_LAYER_SCOPES`, or only
  `logits` when `last_layers_contain_logits_only`.
  """
  last_layers = ('logits',) if last_layers_contain_logits_only else LAST_LAYER_SCOPES

  def multiplier(path, _):
    name = variables_lib.variable_name(path)
    factor = 2.0 if 'biases' in name else 1.0
    if any(layer in name for layer in last_layers):
      factor *= last_layer_gradient_multiplier
    return factor

  return jax.tree_util.tree_map_with_path(multiplier, params)
