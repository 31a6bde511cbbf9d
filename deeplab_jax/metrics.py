"""Evaluation metrics: a jit-friendly confusion matrix and mean IoU on the host.

The original accumulates one confusion matrix over the whole split and takes
`tf.metrics.mean_iou` of it; per-step matrices here are summed (psum across
devices, then on the host in int64/float64) before `segmentation_metrics`.
"""

from typing import Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def _squeeze_channel(x, name: str):
  x = jnp.asarray(x)
  if x.ndim == 4 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim != 3:
    raise ValueError(f'{name} must be [B, H, W] or [B, H, W, 1], got shape {x.shape}.')
  return x


def confusion_matrix(labels,
                     predictions,
                     num_classes: int,
                     ignore_label: int = 255,
                     mask=None) -> jnp.ndarray:
  """Counts [C, C] int32: rows are ground-truth classes, columns predictions.

  Args:
    labels: [B, H, W] or [B, H, W, 1] integer ground truth.
    predictions: predicted class ids of the same shape.
    num_classes: C.
    ignore_label: ground-truth value left out (padding and void pixels).
    mask: optional bool [B]; False marks padding examples (uneven eval splits),
      which are left out entirely.

  Pixels whose label or prediction is outside [0, C) (other than the ignore
  label) raise a ValueError when the inputs are concrete; under `jit` they
  cannot raise and are left out of the counts.
  """
  labels = _squeeze_channel(labels, 'labels').astype(jnp.int32)
  predictions = _squeeze_channel(predictions, 'predictions').astype(jnp.int32)
  if labels.shape != predictions.shape:
    raise ValueError(f'labels {labels.shape} and predictions {predictions.shape} differ in shape.')
  valid = labels != ignore_label
  if mask is not None:
    mask = jnp.asarray(mask, bool)
    if mask.shape != labels.shape[:1]:
      raise ValueError(f'mask must be [B]={labels.shape[:1]}, got shape {mask.shape}.')
    valid = valid & mask[:, None, None]
  labels_in_range = (labels >= 0) & (labels < num_classes)
  predictions_in_range = (predictions >= 0) & (predictions < num_classes)
  if not _is_traced(labels) and not _is_traced(predictions) and not _is_traced(valid):
    for name, in_range, values in (('labels', labels_in_range, labels),
                                   ('predictions', predictions_in_range, predictions)):
      bad = np.asarray(valid & ~in_range)
      if bad.any():
        raise ValueError(f'{name} contain values outside [0, {num_classes}) that are not the '
                         f'ignore label {ignore_label}: {np.unique(np.asarray(values)[bad])[:10]}')
  valid = valid & labels_in_range & predictions_in_range
  index = jnp.where(valid, labels * num_classes + predictions, 0).reshape(-1)
  counts = jnp.zeros((num_classes * num_classes,), jnp.int32).at[index].add(
      valid.reshape(-1).astype(jnp.int32))
  return counts.reshape(num_classes, num_classes)


def segmentation_metrics(confusion, class_names: Optional[Sequence[str]] = None) -> Dict:
  """Mean IoU and friends of an accumulated confusion matrix, in float64.

  `mean_iou` equals `tf.metrics.mean_iou`: IoU_c = TP / (row_c + col_c - TP);
  classes with a zero denominator (absent from both ground truth and
  predictions) are dropped from the mean; a class predicted but never present
  scores 0; with no valid class the result is 0.

  Returns:
    {'mean_iou': float, 'pixel_accuracy': float (0 if no pixels),
     'per_class_iou': {name: float, or None for a dropped class},
     'num_pixels': int}. Names default to the class index as a string.
  """
  confusion = np.asarray(confusion, np.float64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f'confusion must be a square [C, C] matrix, got shape {confusion.shape}.')
  num_classes = confusion.shape[0]
  if class_names is None:
    class_names = [str(i) for i in range(num_classes)]
  if len(class_names) != num_classes:
    raise ValueError(f'class_names has {len(class_names)} entries for {num_classes} classes.')
  true_positives = np.diag(confusion)
  denominator = confusion.sum(axis=0) + confusion.sum(axis=1) - true_positives
  present = denominator > 0
  iou = true_positives / np.where(present, denominator, 1.0)
  num_present = int(present.sum())
  total = float(confusion.sum())
  return {
      'mean_iou': float(iou[present].sum() / num_present) if num_present else 0.0,
      'pixel_accuracy': float(true_positives.sum() / total) if total else 0.0,
      'per_class_iou': {name: (float(value) if keep else None)
                        for name, value, keep in zip(class_names, iou, present)},
      'num_pixels': int(round(total)),
  }


def per_class_table(per_class_iou: Dict[str, Optional[float]], mean_iou: float) -> str:
  """The per-class IoU of `segmentation_metrics` as aligned text lines, ending
  with the mean; 'n/a' marks a class neither in the ground truth nor predicted
  (left out of the mean)."""
  names = list(per_class_iou) + ['mean IoU']
  width = max(len('class'), *(len(n) for n in names))
  lines = [f'{"class":<{width}}  IoU']
  for name, value in per_class_iou.items():
    lines.append(f'{name:<{width}}  {"n/a" if value is None else f"{value:.4f}"}')
  lines.append(f'{"mean IoU":<{width}}  {mean_iou:.4f}')
  return '\n'.join(lines)
