"""Orbax checkpoints of a training run in `<workdir>/checkpoints/<step>/`.

Each step holds separate items: `params`, `batch_stats`, `opt_state` (absent
in checkpoints written by `--mode=convert`), `ema_params` (the moving average
of the parameters, with `config.ema_decay`) and `meta` (JSON, with the step).
Evaluation and prediction restore only `params` (or `ema_params`) and
`batch_stats`.

Restoring checks the saved variable names and shapes against the model of the
config first, and fails with the mismatching names; a checkpoint that cannot
be read (damaged files) is skipped with a warning in favour of the previous one.
A training run also moves it aside to `<step>.damaged`, so that the step is
saved again when the run gets there, instead of the damaged copy staying the
"latest" that evaluation, prediction and export would skip past.
"""

import os
from typing import Any, Dict, List, Optional, Sequence

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from deeplab_jax import variables as variables_lib

CHECKPOINT_SUBDIR = 'checkpoints'
ITEM_NAMES = ('params', 'batch_stats', 'opt_state', 'ema_params', 'meta')
VARIABLE_ITEMS = ('params', 'batch_stats')
CHECKED_ITEMS = VARIABLE_ITEMS + ('ema_params',)  # Compared with the model before a restore.


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, CHECKPOINT_SUBDIR)


def _has_step_dirs(path: str) -> bool:
  return os.path.isdir(path) and any(
      name.isdigit() and os.path.isdir(os.path.join(path, name)) for name in os.listdir(path))


def saved_steps(path: str) -> List[int]:
  """The finished checkpoint steps of a workdir or checkpoint dir (none: [])."""
  directory = find_checkpoint_dir(path)
  if directory is None:
    return []
  return sorted(int(name) for name in os.listdir(directory)
                if name.isdigit() and os.path.isdir(os.path.join(directory, name)))


def find_checkpoint_dir(path: str) -> Optional[str]:
  """The checkpoint directory of a workdir, or `path` itself if it holds steps."""
  for candidate in (checkpoint_dir(path), path):
    if _has_step_dirs(candidate):
      return candidate
  return None


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _metadata_tree(metadata):
  return getattr(metadata, 'tree', metadata)


class CheckpointManager:
  """Saves and restores train states (any flax dataclass with step/params/batch_stats/opt_state).

  `read_only` (evaluation, prediction, export) creates, deletes and moves
  nothing: such a reader may run beside the training run that writes here.
  """

  def __init__(self, workdir: str, max_to_keep: int = 3, *, directory: Optional[str] = None,
               read_only: bool = False):
    if max_to_keep < 1:
      raise ValueError(f'max_to_keep={max_to_keep}: keep at least one checkpoint.')
    self.directory = os.path.abspath(directory or checkpoint_dir(workdir))
    self.read_only = read_only
    if read_only:
      options = ocp.CheckpointManagerOptions(read_only=True, create=False, max_to_keep=None,
                                             save_interval_steps=0)
    else:
      # cleanup_tmp_directories: a write killed midway leaves a tmp folder behind.
      options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=options,
        item_names=ITEM_NAMES,
        # Known handlers let a fresh manager read metadata before any restore.
        item_handlers={**{item: ocp.StandardCheckpointHandler() for item in ITEM_NAMES
                          if item != 'meta'},
                       'meta': ocp.JsonCheckpointHandler()})

  # --- Steps ---
  def all_steps(self) -> List[int]:
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def _items(self, step: int) -> List[str]:
    step_dir = os.path.join(self.directory, str(step))
    return [item for item in ITEM_NAMES if os.path.isdir(os.path.join(step_dir, item))]

  # --- Saving ---
  def save(self, state) -> int:
    step = int(jax.device_get(state.step))
    if step in self.all_steps():
      return step
    items = dict(params=ocp.args.StandardSave(state.params),
                 batch_stats=ocp.args.StandardSave(state.batch_stats),
                 opt_state=ocp.args.StandardSave(state.opt_state),
                 meta=ocp.args.JsonSave({'step': step}))
    if getattr(state, 'ema_params', None) is not None:
      items['ema_params'] = ocp.args.StandardSave(state.ema_params)
    self._manager.save(step, args=ocp.args.Composite(**items))
    self._manager.wait_until_finished()
    logging.info('Saved the checkpoint of step %d in %s.', step, self.directory)
    return step

  def save_variables(self, variables, step: int = 0) -> int:
    self._manager.save(step, args=ocp.args.Composite(
        params=ocp.args.StandardSave(variables['params']),
        batch_stats=ocp.args.StandardSave(variables.get('batch_stats', {})),
        meta=ocp.args.JsonSave({'step': step})), force=True)
    self._manager.wait_until_finished()
    return step

  # --- Restoring ---
  def _check(self, step: int, templates: Dict[str, Any]) -> None:
    """Raises CheckpointMismatchError; other errors mean the checkpoint is unreadable."""
    metadata = self._manager.item_metadata(step)
    saved, expected = {}, {}
    for item, template in templates.items():
      if metadata[item] is None:
        raise ValueError(f'item {item!r} has no metadata')
      saved.update(variables_lib.named_shapes(_metadata_tree(metadata[item]), item + '/'))
      expected.update(variables_lib.named_shapes(template, item + '/'))
    differences = variables_lib.shape_differences(saved, expected)
    if differences:
      raise variables_lib.CheckpointMismatchError(variables_lib.mismatch_report(
          f'The checkpoint of step {step} in {self.directory} does not match the model of '
          'the config', differences,
          found_in='the checkpoint',
          fix='Use the config it was trained with, or a fresh --workdir.'))

  def _restore_items(self, step: int, templates: Dict[str, Any]) -> Dict[str, Any]:
    self._check(step, {k: v for k, v in templates.items() if k in CHECKED_ITEMS})
    args = {item: ocp.args.StandardRestore(_abstract(template))
            for item, template in templates.items()}
    args['meta'] = ocp.args.JsonRestore()
    restored = self._manager.restore(step, args=ocp.args.Composite(**args))
    return {item: restored[item] for item in list(templates) + ['meta']}

  def _restore_with_fallback(self, templates_for_step, steps: Optional[Sequence[int]] = None):
    steps = list(reversed(self.all_steps())) if steps is None else list(steps)
    for index, step in enumerate(steps):
      try:
        return step, self._restore_items(step, templates_for_step(step))
      except variables_lib.CheckpointMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-except  (Orbax/tensorstore raise many types.)
        older = steps[index + 1] if index + 1 < len(steps) else None
        logging.warning('Cannot read the checkpoint of step %d in %s (%s: %s); %s', step,
                        self.directory, type(e).__name__, e,
                        f'falling back to step {older}.' if older is not None
                        else 'no older checkpoint left.')
        if not self.read_only:
          self._move_aside(step)
    return None, None

  def _move_aside(self, step: int) -> None:
    """Renames a damaged step's folder to `<step>.damaged` (kept for inspection)."""
    if jax.process_index() == 0:
      source = os.path.join(self.directory, str(step))
      target, copy = source + '.damaged', 1
      while os.path.exists(target):
        copy += 1
        target = f'{source}.damaged{copy}'
      os.rename(source, target)
      logging.warning('Moved the damaged checkpoint of step %d to %s; the step will be saved '
                      'again when training gets there.', step, target)
    self._manager.reload()

  def restore_latest(self, template_state):
    """The newest readable checkpoint onto the template's shardings, or None."""
    def templates(step):
      items = self._items(step)
      wanted = {'params': template_state.params, 'batch_stats': template_state.batch_stats}
      if 'opt_state' in items:
        wanted['opt_state'] = template_state.opt_state
      if 'ema_params' in items and getattr(template_state, 'ema_params', None) is not None:
        wanted['ema_params'] = template_state.ema_params
      return wanted

    step, restored = self._restore_with_fallback(templates)
    if restored is None:
      return None
    opt_state = restored.get('opt_state')
    if opt_state is None:
      logging.warning('The checkpoint of step %d has no optimizer state (a converted model); '
                      'starting the optimizer afresh.', step)
      opt_state = template_state.opt_state
    saved_step = int(restored['meta'].get('step', step))
    step_array = jax.device_put(np.asarray(saved_step, np.int32), template_state.step.sharding)
    state = template_state.replace(step=step_array, params=restored['params'],
                                   batch_stats=restored['batch_stats'], opt_state=opt_state)
    if getattr(template_state, 'ema_params', None) is not None:
      if 'ema_params' not in restored:
        logging.warning('The checkpoint of step %d has no weight average (config.ema_decay was '
                        'off); the average starts from its parameters.', step)
      state = state.replace(ema_params=restored.get('ema_params') or jax.tree.map(
          jax.numpy.copy, restored['params']))
    return state

  def restore_variables(self, template_variables, step: Optional[int] = None, *,
                        ema: bool = False):
    """(`{'params', 'batch_stats'}`, step) of the newest readable (or given) checkpoint.

    With `ema`, `params` are the checkpoint's weight average where it has one.
    """
    if not self.all_steps():
      raise FileNotFoundError(f'No checkpoint in {self.directory}.')

    def templates(found_step):
      averaged = ema and 'ema_params' in self._items(found_step)
      if ema and not averaged:
        logging.warning('The checkpoint of step %d has no weight average (it was trained '
                        'without config.ema_decay): using its parameters.', found_step)
      return {'ema_params' if averaged else 'params': template_variables['params'],
              'batch_stats': template_variables.get('batch_stats', {})}

    steps = None if step is None else [step]
    found_step, restored = self._restore_with_fallback(templates, steps)
    if restored is None:
      raise IOError(f'No readable checkpoint in {self.directory} (see the warnings above).')
    params = restored['ema_params'] if 'ema_params' in restored else restored['params']
    return {'params': params, 'batch_stats': restored['batch_stats']}, found_step

  def wait_until_finished(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


def restore_variables(workdir: str, template_variables, step: Optional[int] = None, *,
                      ema: bool = False):
  """(`{'params', 'batch_stats'}`, step) from a workdir (or checkpoint dir); with
  `ema`, the weight average as `params` where the checkpoint has one."""
  directory = find_checkpoint_dir(workdir)
  if directory is None:
    raise FileNotFoundError(
        f'No checkpoint in {checkpoint_dir(workdir)}: train first (--mode=train) or convert a '
        'TF checkpoint (--mode=convert --tf_checkpoint=PREFIX) into this --workdir.')
  manager = CheckpointManager(workdir, directory=directory, read_only=True)
  try:
    return manager.restore_variables(template_variables, step, ema=ema)
  finally:
    manager.close()


def load_variables_for_init(path: str, template_variables, *, backbone_scope: str,
                            include_logits: bool = True, model: str = ''):
  """Variables from the latest checkpoint under `path`, for `config.init_checkpoint`.

  Read as `checkpoint_import.import_tf_checkpoint(partial_head=True)` reads a
  TF checkpoint: the backbone (`backbone_scope`) must match; head variables
  the checkpoint has in the same shape are loaded, the template's others
  (fresh) kept, the checkpoint's others ignored. With `include_logits=False`,
  the `logits/...` variables come from the template whatever their saved
  shape, so a model with another number of classes can start from it.
  `model` (see `variables.describe_model`) goes into the mismatch report.
  """
  directory = find_checkpoint_dir(path)
  manager = CheckpointManager(path, directory=directory, read_only=True)
  try:
    saved = manager._manager.item_metadata(manager.latest_step())  # pylint: disable=protected-access
    sharding = getattr(jax.tree.leaves(template_variables)[0], 'sharding', None)
    as_saved = {item: jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
        _metadata_tree(saved[item]) or {}) for item in VARIABLE_ITEMS}
    restored, _ = manager.restore_variables(as_saved)
  finally:
    manager.close()
  # Names without the collection, as in a TF checkpoint.
  found = {'/'.join(key[1:]): value for key, value in traverse_util.flatten_dict(restored).items()}
  template = traverse_util.flatten_dict(template_variables)
  by_name = {'/'.join(key[1:]): key for key in template}
  wanted = lambda name: include_logits or not name.startswith('logits/')
  differences = variables_lib.shape_differences(
      {n: v.shape for n, v in found.items() if wanted(n)},
      {n: template[key].shape for n, key in by_name.items() if wanted(n)})
  differences, fresh = variables_lib.set_head_differences_aside(differences, backbone_scope,
                                                                source=directory)
  if differences:
    raise variables_lib.CheckpointMismatchError(variables_lib.mismatch_report(
        f'The checkpoint in {directory} does not match the model of the config', differences,
        found_in='the checkpoint', model=model,
        fix='A different number of classes needs config.initialize_last_layer=False; other '
            'differences, the model fields above as the checkpoint was trained.'))
  for name, key in by_name.items():
    if wanted(name) and name not in fresh:
      template[key] = found[name]
  return traverse_util.unflatten_dict(template)


def save_variables(workdir: str, variables, step: int = 0) -> str:
  """Writes `{'params', 'batch_stats'}` as the checkpoint of `step`; returns its dir."""
  manager = CheckpointManager(workdir)
  try:
    manager.save_variables(variables, step)
  finally:
    manager.close()
  return os.path.join(manager.directory, str(step))


def convert_tf_checkpoint(config, workdir: str, tf_checkpoint: str) -> str:
  """`--mode=convert`: a TF model-zoo checkpoint → an Orbax checkpoint in the workdir.

  Refuses a workdir that has checkpoints: evaluation, prediction and export use
  the newest step, which would stay the old one, not the converted step 0.
  """
  from deeplab_jax.checkpoint_import import import_tf_checkpoint  # pylint: disable=g-import-not-at-top
  steps = saved_steps(workdir)
  if steps:
    raise ValueError(f'{checkpoint_dir(workdir)} already has checkpoints (steps {steps}); '
                     'eval, predict and export would go on using the newest of them, not the '
                     'converted model. Convert into a new --workdir.')
  variables = import_tf_checkpoint(tf_checkpoint, config, include_logits=True)
  return save_variables(workdir, variables, step=0)
