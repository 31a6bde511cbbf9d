"""Import the original DeepLab's TF checkpoints (model-zoo `model.ckpt` format).

Our Flax variable paths joined with '/' are the TF variable names, so the
import is a name-for-name copy with shape checks; anything that does not match
is reported by name before anything is returned.
"""

import re
from typing import Dict, Optional

import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import traverse_util

from deeplab_jax import backbones
from deeplab_jax import variables as variables_lib

# Saved alongside model variables by training, never part of the model.
_IGNORED = re.compile(r'(^|/)(global_step|Momentum|ExponentialMovingAverage)(/|$)|/Momentum$'
                      r'|^beta[12]_power$|/Adam(_1)?$')
# Scopes that the original re-initialises with `initialize_last_layer=False`.
LOGITS_SCOPE = 'logits'


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
    raise variables_lib.CheckpointMismatchError(
        f'{path_prefix}: cannot read TF checkpoint ({e}).') from e


def import_tf_checkpoint(path_prefix: str, config: ml_collections.ConfigDict, *,
                         include_logits: bool = True, backbone_only: Optional[bool] = None,
                         partial_head: bool = False, seed: int = 0) -> Dict[str, dict]:
  """Returns `{'params': ..., 'batch_stats': ...}` read from a TF checkpoint.

  Args:
    path_prefix: e.g. `.../model.ckpt` or `.../model.ckpt-30000`.
    config: the experiment config; `config.model` defines the expected variables.
    include_logits: False leaves `logits/*` freshly initialised (fine-tuning to
      another number of classes); the checkpoint's logits are then ignored.
    backbone_only: True for ImageNet checkpoints: only the backbone is read and
      the head is freshly initialised. None decides by whether the checkpoint
      has any head variables.
    partial_head: True loads the head variables the checkpoint has and
      initialises the model's others freshly, ignoring the checkpoint's others,
      as the original's training does (`ignore_missing_vars=True`): a
      MobileNetV2 model-zoo checkpoint (no decoder, no atrous branches) then
      starts a model with a decoder, the cell or an auxiliary head. The
      backbone must still be complete and every loaded shape match. False
      (conversion, evaluation) requires every variable.
    seed: seed of the fresh initialisation of whatever is not loaded.

  Raises:
    CheckpointMismatchError: listing missing, unexpected and mis-shaped variables.
  """
  tf_vars = _read_tf_checkpoint(path_prefix)
  flat = traverse_util.flatten_dict(variables_lib.abstract_variables(config))
  by_name = {'/'.join(key[1:]): key for key in flat}  # key[0] is the collection.
  backbone_scope = backbones.scope_name(config.model.backbone)
  if backbone_only is None:
    backbone_only = all(n.startswith(backbone_scope + '/') for n in tf_vars)

  def wanted(name):
    if backbone_only:
      return name.startswith(backbone_scope + '/')
    return include_logits or not name.startswith(LOGITS_SCOPE + '/')

  expected = {n: flat[key].shape for n, key in by_name.items() if wanted(n)}
  # ImageNet checkpoints also hold the classifier, which DeepLab never builds.
  found = {n: v.shape for n, v in tf_vars.items() if wanted(n) and not (
      backbone_only and n not in expected and re.search(r'/(logits|Logits)/', n))}
  differences = variables_lib.shape_differences(found, expected)
  if partial_head and not backbone_only:
    differences, fresh = variables_lib.set_head_differences_aside(
        differences, backbone_scope, source=path_prefix)
    expected = {n: shape for n, shape in expected.items() if n not in fresh}
  if differences:
    raise variables_lib.CheckpointMismatchError(variables_lib.mismatch_report(
        f'{path_prefix} does not match the model of the config', differences,
        found_in='the checkpoint',
        model=variables_lib.describe_model(config),
        fix='A different number of classes needs include_logits=False '
            '(config.initialize_last_layer=False); other differences, the model fields '
            'above as the checkpoint was trained.'))
  if len(expected) < len(by_name):  # Part of the model is not loaded: initialise it.
    flat = traverse_util.flatten_dict(variables_lib.initial_variables(config, seed))
  for name in expected:
    key = by_name[name]
    flat[key] = jnp.asarray(tf_vars[name], dtype=flat[key].dtype)
  return traverse_util.unflatten_dict(flat)

