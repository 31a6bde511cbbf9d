"""The model's variables: their names, shapes, initial values, and whether given ones fit.

Variables are `{'params': ..., 'batch_stats': ...}` (Flax collections). A
variable's name is its path in its collection joined with '/', e.g.
'aspp0/BatchNorm/gamma': the same as its name in the original's TF
checkpoints, so checkpoint import, gradient multipliers and weight decay all
select variables by it.
"""

import dataclasses
import functools
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from deeplab_jax import layers
from deeplab_jax.model import create_model

COLLECTIONS = ('params', 'batch_stats')
# No variable's shape depends on the input size: a small input keeps building
# the variables cheap (33 = 32 + 1 is a valid size at every output stride).
_SAMPLE_SHAPE = (1, 33, 33, 3)
_SHOWN_PER_SECTION = 40


class CheckpointMismatchError(ValueError):
  """Saved or given variables do not fit the model built from the config."""


# --- Names ---------------------------------------------------------------------

def variable_name(path) -> str:
  """A pytree key path as a TF-style name: the keys joined with '/'."""
  parts = []
  for key in path:
    for attribute in ('key', 'name', 'idx'):
      if hasattr(key, attribute):
        parts.append(str(getattr(key, attribute)))
        break
    else:
      parts.append(str(key))
  return '/'.join(parts)


def named_shapes(tree, prefix: str = '') -> Dict[str, Tuple[int, ...]]:
  """Variable name (after `prefix`) → shape, for arrays, shape structs and
  Orbax metadata alike."""
  return {prefix + variable_name(path): tuple(getattr(leaf, 'shape', np.shape(leaf)))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


# --- Building them ---------------------------------------------------------------

def model_collections(variables) -> Dict[str, Any]:
  """Just `{'params', 'batch_stats'}` of a variables dict ({} for no batch statistics)."""
  return {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})}


def abstract_variables(config: ml_collections.ConfigDict, sharding=None) -> Dict[str, Any]:
  """The config's model's variables as `jax.ShapeDtypeStruct`s (nothing is computed),
  placed on `sharding` if given: what a restore needs."""
  model = create_model(config)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(_SAMPLE_SHAPE),
                                             train=False))
  if sharding is not None:
    shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                          shapes)
  return model_collections(shapes)


def initial_variables(config: ml_collections.ConfigDict, seed: int) -> Dict[str, Any]:
  """Freshly initialised variables of the config's model, the same on every host."""
  model = create_model(config)
  sample = jnp.zeros(_SAMPLE_SHAPE, jnp.float32)
  # Drawn on the host: compiling one program of hundreds of initialisers took
  # 6-9 s on CPU (a GPU's state init took 28 s). The same values on every host.
  variables = layers.host_initial_variables(model, sample, seed, train=False)
  if variables is None:
    # A variable without a host initialiser: the device program. 'unsafe_rbg'
    # compiles ~4x faster than threefry on CPU for the hundreds of initialisers.
    key = jax.random.key(seed, impl='unsafe_rbg')
    variables = jax.jit(functools.partial(model.init, train=False))(key, sample)
  return model_collections(variables)


# --- Checking given ones ---------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ShapeDifferences:
  """How found variables differ from the model's, by name."""
  missing: Tuple[str, ...] = ()  # The model's, not found.
  unexpected: Tuple[str, ...] = ()  # Found, not the model's.
  misshaped: Tuple[Tuple[str, Tuple[int, ...], Tuple[int, ...]], ...] = ()  # (name, found, model's)

  def __len__(self) -> int:
    return len(self.missing) + len(self.unexpected) + len(self.misshaped)


def shape_differences(found: Dict[str, Tuple[int, ...]],
                      expected: Dict[str, Tuple[int, ...]]) -> ShapeDifferences:
  """Compares name → shape maps (see `named_shapes`) of found and model variables."""
  return ShapeDifferences(
      missing=tuple(sorted(set(expected) - set(found))),
      unexpected=tuple(sorted(set(found) - set(expected))),
      misshaped=tuple((n, tuple(found[n]), tuple(expected[n]))
                      for n in sorted(set(found) & set(expected))
                      if tuple(found[n]) != tuple(expected[n])))


def set_head_differences_aside(differences: ShapeDifferences, backbone_scope: str, source: str
                               ) -> Tuple[ShapeDifferences, Tuple[str, ...]]:
  """Starting a model from a checkpoint with another head, as the original's
  training does (`ignore_missing_vars`): the model's head variables that the
  checkpoint lacks start fresh, the checkpoint's that the model lacks are
  ignored (both logged, naming `source`). Returns (what still differs: the
  backbone's differences and mis-shaped variables, the names that start fresh).
  """
  in_head = lambda name: not name.startswith(backbone_scope + '/')
  fresh = tuple(n for n in differences.missing if in_head(n))
  ignored = tuple(n for n in differences.unexpected if in_head(n))
  if fresh or ignored:
    logging.info('%s: %d head variables start fresh (not in the checkpoint): %s; %d of the '
                 "checkpoint's are not in the model and are ignored: %s", source, len(fresh),
                 ', '.join(fresh), len(ignored), ', '.join(ignored))
  rest = dataclasses.replace(
      differences, missing=tuple(n for n in differences.missing if n not in fresh),
      unexpected=tuple(n for n in differences.unexpected if n not in ignored))
  return rest, fresh


def describe_model(config: ml_collections.ConfigDict) -> str:
  """The model fields that decide which variables there are."""
  m = config.model
  return (f'backbone={m.backbone}, num_classes={m.num_classes}, '
          f'atrous_rates={tuple(m.atrous_rates or ())}, '
          f'decoder_output_stride={m.decoder_output_stride}, '
          f'dense_prediction_cell={m.dense_prediction_cell}, '
          f'auxiliary_loss_weight={config.get("auxiliary_loss_weight", 0.0)}')


def mismatch_report(headline: str, differences: ShapeDifferences, *, found_in: str,
                    model: str = '', fix: str = '') -> str:
  """`headline` ('X does not match the model of the config') with `model` (see
  `describe_model`) and the number of differences, then the differences by
  kind (at most 40 names each), then `fix`, how to fix it."""

  def section(title, lines):
    if not lines:
      return ''
    shown = '\n    '.join(lines[:_SHOWN_PER_SECTION])
    more = (f'\n    … and {len(lines) - _SHOWN_PER_SECTION} more'
            if len(lines) > _SHOWN_PER_SECTION else '')
    return f'\n  {title} ({len(lines)}):\n    {shown}{more}'

  about = '; '.join(part for part in (model, f'{len(differences)} differences') if part)
  return (f'{headline} ({about}):'
          + section(f'missing from {found_in}', differences.missing)
          + section(f'unexpected in {found_in}', differences.unexpected)
          + section('different shapes', [f'{name}: {found} in {found_in}, {wanted} in the model'
                                         for name, found, wanted in differences.misshaped])
          + (f'\n  {fix}' if fix else ''))


def check_variables(config: ml_collections.ConfigDict, variables) -> None:
  """Raises CheckpointMismatchError naming the variables that do not fit the config's model."""
  if not isinstance(variables, dict) or 'params' not in variables:
    raise ValueError("variables must be a dict with 'params' (and 'batch_stats').")
  expected, given = {}, {}
  model_variables = abstract_variables(config)
  for collection in COLLECTIONS:
    expected.update(named_shapes(model_variables[collection], collection + '/'))
    given.update(named_shapes(variables.get(collection, {}), collection + '/'))
  differences = shape_differences(given, expected)
  if differences:
    raise CheckpointMismatchError(mismatch_report(
        'The variables do not match the model of the config', differences,
        found_in='the variables', model=describe_model(config),
        fix='Use the config the variables were trained with.'))

