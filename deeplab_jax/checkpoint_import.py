"""Import the original DeepLab's TF checkpoints (model-zoo `model.ckpt` format).

Our Flax variable paths joined with '/' are the TF variable names, so the
import is a name-for-name copy with shape checks; anything that does not match
is reported by name before anything is returned.
"""

import re
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from deeplab_jax.model import create_model

# Saved alongside model variables by training, never part of the model.
_IGNORED = re.compile(r'(^|/)(global_step|Momentum|ExponentialMovingAverage)(/|$)|/Momentum$'
                      r'|^beta[12]_power$|/Adam(_1)?$')
# Scopes that the original re-initialises with `initialize_last_layer=False`.
LOGITS_SCOPE = 'logits'


class CheckpointMismatchError(ValueError):
  """The checkpoint does not fit the model built from the config."""


def _read_tf_checkpoint(path_prefix: str) -> Dict[str, np.ndarray]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (heavy; only here)
  if not tf.io.gfile.exists(path_prefix + '.index'):
    hint = ''
    if tf.io.gfile.glob(path_prefix + '.data-*.xz'):
      hint = ' The data file is xz-compressed: run `xz -dk` on it first.'
    raise FileNotFoundError(f'{path_prefix}.index: no TF checkpoint at this prefix.{hint}')
  try:
    reader = tf.train.load_checkpoint(path_prefix)
    names = reader.get_variable_to_shape_map()
    return {name: reader.get_tensor(name) for name in names if not _IGNORED.search(name)}
  except Exception as e:  # TF raises several error types for damaged files.
    raise CheckpointMismatchError(f'{path_prefix}: cannot read TF checkpoint ({e}).') from e


def model_variables(config: ml_collections.ConfigDict, seed: int = 0, abstract: bool = False):
  """Freshly initialised variables of the model, or only their shapes.

  The input size fixes no variable shape, so a small one keeps this cheap.
  """
  model = create_model(config)
  init = lambda key: model.init(key, jnp.zeros((1, 33, 33, 3)), train=False)
  if abstract:
    return jax.eval_shape(init, jax.random.key(seed))
  return jax.jit(init)(jax.random.key(seed))


def import_tf_checkpoint(path_prefix: str, config: ml_collections.ConfigDict, *,
                         include_logits: bool = True, backbone_only: Optional[bool] = None,
                         seed: int = 0) -> Dict[str, dict]:
  """Returns `{'params': ..., 'batch_stats': ...}` read from a TF checkpoint.

  Args:
    path_prefix: e.g. `.../model.ckpt` or `.../model.ckpt-30000`.
    config: the experiment config; `config.model` defines the expected variables.
    include_logits: False leaves `logits/*` freshly initialised (fine-tuning to
      another number of classes); the checkpoint's logits are then ignored.
    backbone_only: True for ImageNet checkpoints: only the backbone is read and
      the head is freshly initialised. None decides by whether the checkpoint
      has any head variables.
    seed: seed of the fresh initialisation of whatever is not loaded.

  Raises:
    CheckpointMismatchError: listing missing, unexpected and mis-shaped variables.
  """
  tf_vars = _read_tf_checkpoint(path_prefix)
  flat = traverse_util.flatten_dict(model_variables(config, abstract=True))
  by_name = {'/'.join(key[1:]): key for key in flat}  # key[0] is the collection.
  backbone_scope = next(name for name in by_name).split('/')[0]
  if backbone_only is None:
    backbone_only = all(n.startswith(backbone_scope + '/') for n in tf_vars)

  def wanted(name):
    if backbone_only:
      return name.startswith(backbone_scope + '/')
    return include_logits or not name.startswith(LOGITS_SCOPE + '/')

  missing = sorted(n for n in by_name if wanted(n) and n not in tf_vars)
  unexpected = sorted(n for n in tf_vars if wanted(n) and n not in by_name)
  if backbone_only:
    # ImageNet checkpoints also hold the classifier, which DeepLab never builds.
    unexpected = [n for n in unexpected if not re.search(r'/(logits|Logits)/', n)]
  misshaped = sorted(f'{n}: checkpoint {tuple(tf_vars[n].shape)} vs model '
                     f'{tuple(flat[by_name[n]].shape)}'
                     for n in by_name if wanted(n) and n in tf_vars
                     and tuple(tf_vars[n].shape) != tuple(flat[by_name[n]].shape))
  if missing or unexpected or misshaped:
    raise CheckpointMismatchError(_mismatch_report(path_prefix, config, missing, unexpected,
                                                   misshaped))
  for name, key in by_name.items():
    if wanted(name):
      flat[key] = jnp.asarray(tf_vars[name], dtype=flat[key].dtype)
  return traverse_util.unflatten_dict(flat)


def _mismatch_report(path_prefix, config, missing, unexpected, misshaped) -> str:
  def section(title, items):
    if not items:
      return ''
    shown = '\n    '.join(items[:40])
    more = f'\n    … and {len(items) - 40} more' if len(items) > 40 else ''
    return f'\n  {title} ({len(items)}):\n    {shown}{more}'
  m = config.model
  return (f'{path_prefix} does not match the model of the config (backbone={m.backbone}, '
          f'num_classes={m.num_classes}, atrous_rates={tuple(m.atrous_rates or ())}, '
          f'decoder_output_stride={m.decoder_output_stride}, '
          f'dense_prediction_cell={m.dense_prediction_cell}):'
          + section('missing from the checkpoint', missing)
          + section('unexpected in the checkpoint', unexpected)
          + section('different shapes', misshaped)
          + '\n  A different number of classes needs include_logits=False '
            '(config.initialize_last_layer=False).')

