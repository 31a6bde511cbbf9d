"""Training: the original DeepLab recipe, data-parallel over a device mesh.

One global batch is split over the mesh axis 'data'. The train step is a
per-device function under `jax.shard_map`; the loss is the global mean
`psum(CE sum) / psum(valid pixels)` plus the L2 term once, and no gradient
collective is applied (shard_map already sums the gradients of replicated
parameters over devices). Batch norm is synchronised over 'data', so the step
equals a single-device step on the whole global batch.
"""

import glob
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, Optional

from absl import logging
import flax
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np
import optax

from deeplab_jax import backbones
from deeplab_jax import checkpointing
from deeplab_jax import config_checks
from deeplab_jax import evaluate
from deeplab_jax import losses
from deeplab_jax import parallel
from deeplab_jax import variables as variables_lib
from deeplab_jax.model import DeepLab, create_model

@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs; `step` counts completed steps."""
  step: jnp.ndarray
  params: Any
  batch_stats: Any
  opt_state: Any
  ema_params: Any = None  # The moving average of `params`, with config.ema_decay.

  @property
  def variables(self) -> Dict[str, Any]:
    return {'params': self.params, 'batch_stats': self.batch_stats}

  @property
  def evaluated_variables(self) -> Dict[str, Any]:
    """What evaluation, export and prediction use: the averaged weights if kept."""
    params = self.params if self.ema_params is None else self.ema_params
    return {'params': params, 'batch_stats': self.batch_stats}


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


# --- Optimisation ------------------------------------------------------------

def learning_rate_schedule(config: ml_collections.ConfigDict) -> Callable[[Any], jnp.ndarray]:
  """The original's learning rate as a function of the step (float32).

  poly: base·(1 − min(step, N)/N)^power with N = num_train_steps; step:
  base·factor^floor(step/decay_step); before `slow_start_step` the constant
  `slow_start_learning_rate`.
  """
  base = float(config.learning_rate)
  policy = config.learning_policy
  if policy not in ('poly', 'step'):
    raise ValueError(f"config.learning_policy={policy!r}: expected 'poly' or 'step'.")
  if policy == 'poly' and config.num_train_steps <= 0:
    raise ValueError(f'config.num_train_steps={config.num_train_steps} must be positive.')
  if policy == 'step' and config.learning_rate_decay_step <= 0:
    raise ValueError(f'config.learning_rate_decay_step={config.learning_rate_decay_step} '
                     'must be positive.')

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    if policy == 'poly':
      total = jnp.float32(config.num_train_steps)
      rate = base * (1.0 - jnp.minimum(step, total) / total) ** jnp.float32(config.learning_power)
    else:
      rate = base * jnp.float32(config.learning_rate_decay_factor) ** jnp.floor(
          step / jnp.float32(config.learning_rate_decay_step))
    if config.slow_start_step > 0:
      rate = jnp.where(step < config.slow_start_step,
                       jnp.float32(config.slow_start_learning_rate), rate)
    return jnp.asarray(rate, jnp.float32)

  return schedule


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """TF's MomentumOptimizer (acc = m·acc + g; w −= lr·acc, not Nesterov), or
  Adam, the later original's other choice (`config.optimizer`)."""
  name = config.get('optimizer', 'momentum')
  if name == 'momentum':
    return optax.sgd(learning_rate_schedule(config), momentum=float(config.momentum))
  if name == 'adam':
    return optax.adam(learning_rate_schedule(config))
  raise ValueError(f"config.optimizer={name!r}: expected 'momentum' or 'adam'.")


# --- State -------------------------------------------------------------------

def initial_variables(config: ml_collections.ConfigDict, mesh: Mesh, seed: Optional[int] = None):
  """Freshly initialised `{'params', 'batch_stats'}` (`config.seed`), replicated on the mesh."""
  return parallel.replicate(
      variables_lib.initial_variables(config, config.seed if seed is None else seed), mesh)


def create_train_state(config, variables, mesh: Mesh) -> TrainState:
  """Step 0 with fresh optimizer state for the given variables, replicated."""
  optimizer = create_optimizer(config)
  params = parallel.replicate(variables['params'], mesh)
  batch_stats = parallel.replicate(variables.get('batch_stats', {}), mesh)
  opt_state = jax.jit(optimizer.init, out_shardings=NamedSharding(mesh, P()))(params)
  # A copy, not the same buffers: the train step donates both.
  ema_params = jax.tree.map(jnp.copy, params) if config.get('ema_decay') else None
  return TrainState(step=parallel.replicate(jnp.zeros((), jnp.int32), mesh), params=params,
                    batch_stats=batch_stats, opt_state=opt_state, ema_params=ema_params)


def init_checkpoint_kind(path: str) -> str:
  """'tf' for a TF checkpoint prefix, 'orbax' for a folder of Orbax checkpoints."""
  if os.path.exists(path + '.index') or glob.glob(path + '.data-*'):
    return 'tf'
  if checkpointing.find_checkpoint_dir(path) is not None:
    return 'orbax'
  raise FileNotFoundError(
      f'config.init_checkpoint={path!r} is neither a TF checkpoint prefix (no {path}.index) '
      'nor a directory with Orbax checkpoints.')


def initialise_from_checkpoint(config, variables, mesh: Mesh):
  """Variables updated from `config.init_checkpoint` (a TF prefix or an Orbax dir)."""
  path = config.init_checkpoint
  if not path:
    return variables
  from deeplab_jax import checkpoint_import  # pylint: disable=g-import-not-at-top
  if init_checkpoint_kind(path) == 'tf':
    logging.info('Initialising from the TF checkpoint %s (last layer: %s).', path,
                 config.initialize_last_layer)
    loaded = checkpoint_import.import_tf_checkpoint(
        path, config, include_logits=config.initialize_last_layer, partial_head=True,
        seed=config.seed)
  else:
    logging.info('Initialising from the Orbax checkpoint in %s (last layer: %s).', path,
                 config.initialize_last_layer)
    loaded = checkpointing.load_variables_for_init(
        path, variables, backbone_scope=backbones.scope_name(config.model.backbone),
        include_logits=config.initialize_last_layer,
        model=variables_lib.describe_model(config))
  return parallel.replicate(variables_lib.model_collections(loaded), mesh)


# --- The train step ----------------------------------------------------------

def _loss_options(config, class_weights=None) -> Dict[str, Any]:
  return dict(num_classes=config.model.num_classes,
              ignore_label=int(config.dataset.ignore_label),
              upsample_logits=config.upsample_logits,
              top_k_percent_pixels=config.top_k_percent_pixels,
              hard_example_mining_step=config.hard_example_mining_step,
              label_weights=class_weights)


def resolve_class_weights(config: ml_collections.ConfigDict, train_source=None):
  """The loss's per-class weights from `config.class_weights`, or None.

  None: unweighted. 'auto': `losses.balanced_class_weights` of the training
  split's pixel histogram (read once from `train_source`, this host's shard;
  the hosts' counts are summed so all get the same weights). Otherwise a
  comma-separated list with one weight per class.
  """
  value = config.get('class_weights')
  if value is None:
    return None
  num_classes = config.model.num_classes
  if value == 'auto':
    if train_source is None:
      raise ValueError("config.class_weights='auto' needs the training split to count pixels.")
    from deeplab_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
    histogram = input_pipeline.class_histogram(train_source, num_classes,
                                               int(config.dataset.ignore_label))
    histogram = parallel.sum_over_processes(histogram)
    weights = losses.balanced_class_weights(histogram)
    logging.info('Class weights from the training pixels %s: %s', histogram.tolist(),
                 ', '.join(f'{w:.3g}' for w in weights))
    return weights
  return config_checks.check_class_weights_count(config)


def _auxiliary_logits(updates):
  """The auxiliary head's logits (one per pyramid scale) sown in a training apply."""
  return updates.get('intermediates', {}).get('auxiliary_logits', ())


def create_train_step(config: ml_collections.ConfigDict, mesh: Mesh, class_weights=None):
  """`train_step(state, batch) -> (state, metrics)`, jitted over the mesh.

  batch: `{'image': [B, H, W, 3] pixels 0..255, 'label': [B, H, W] class ids}`
  split over 'data', of any real and integer dtypes (the input pipeline sends
  uint8: a quarter of float32's bytes); the step casts them. The state's
  buffers are donated. With `config.accumulation_steps` = k > 1 each device's
  part of the batch is run as k micro-batches (see `_accumulated_step`).
  `class_weights`: the loss's per-class weights (see `resolve_class_weights`),
  or None.
  """
  model = create_model(config, bn_axis_name=parallel.DATA_AXIS)
  optimizer = create_optimizer(config)
  schedule = learning_rate_schedule(config)
  loss_options = _loss_options(config, class_weights)
  multiplier_options = dict(
      last_layer_gradient_multiplier=config.last_layer_gradient_multiplier,
      last_layers_contain_logits_only=config.last_layers_contain_logits_only)

  accumulation_steps = int(config.get('accumulation_steps', 1))
  auxiliary_loss_weight = float(config.auxiliary_loss_weight)

  def per_device_step(state: TrainState, batch):
    batch = {'image': batch['image'].astype(jnp.float32),
             'label': batch['label'].astype(jnp.int32)}
    # A different dropout mask on every device and at every step.
    dropout_rng = jax.random.fold_in(
        jax.random.fold_in(jax.random.key(config.seed), state.step),
        jax.lax.axis_index(parallel.DATA_AXIS))
    if accumulation_steps > 1:
      return _accumulated_step(state, batch, dropout_rng)

    def mean_cross_entropy(logits, loss_weight=1.0):
      loss_sum, count = losses.cross_entropy_sums(logits, batch['label'], step=state.step,
                                                  loss_weight=loss_weight, **loss_options)
      return losses.safe_divide(jax.lax.psum(loss_sum, parallel.DATA_AXIS),
                                jax.lax.psum(count, parallel.DATA_AXIS))

    def loss_fn(params):
      outputs, updates = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, batch['image'], train=True,
          mutable=['batch_stats', 'intermediates'], rngs={'dropout': dropout_rng},
          method=DeepLab.multi_scale_logits)
      # The original sums one loss per output (each pyramid scale and the merge).
      cross_entropy = sum(mean_cross_entropy(logits) for logits in outputs.values())
      # One auxiliary term per pyramid scale, weighted (not in `cross_entropy`,
      # which stays comparable with runs without the auxiliary head).
      auxiliary = sum(mean_cross_entropy(logits, auxiliary_loss_weight)
                      for logits in _auxiliary_logits(updates))
      # Replicated: added once to the global loss (one global batch, so the
      # original's division by the number of clones does not apply).
      l2 = losses.l2_regularization(params, config.weight_decay)
      return cross_entropy + auxiliary + l2, (cross_entropy, l2, updates.get('batch_stats', {}))

    (loss, (cross_entropy, l2, batch_stats)), grads = jax.value_and_grad(
        loss_fn, has_aux=True)(state.params)
    return _apply_gradients(state, grads, batch_stats, loss, cross_entropy, l2)

  def _accumulated_step(state: TrainState, batch, dropout_rng):
    """One optimizer step from `accumulation_steps` micro-batches of the batch.

    The gradient is exactly the whole batch's: each micro-batch adds the
    gradient of its (all-device) cross-entropy *sum*, and the total is divided
    once by the pixel count of all micro-batches. Batch norm differs, as in the
    peers: each micro-batch is normalised with its own (sync) statistics and
    updates the moving averages once. Hard-pixel mining picks per micro-batch.
    """
    micro_batches = jax.tree.map(
        lambda x: x.reshape(accumulation_steps, x.shape[0] // accumulation_steps, *x.shape[1:]),
        batch)

    def micro_step(carry, inputs):
      grad_sum, cross_entropy_sum, auxiliary_sum, count, batch_stats = carry
      index, micro = inputs

      def sum_fn(params):
        logits, updates = model.apply(
            {'params': params, 'batch_stats': batch_stats}, micro['image'], train=True,
            mutable=['batch_stats', 'intermediates'],
            rngs={'dropout': jax.random.fold_in(dropout_rng, index)})
        micro_sum, micro_count = losses.cross_entropy_sums(logits, micro['label'],
                                                           step=state.step, **loss_options)
        # Without pixel mining the auxiliary term counts the same pixels, so
        # the one division below is exact for it too (config_checks refuses
        # mining with both).
        micro_auxiliary = sum(
            losses.cross_entropy_sums(logits, micro['label'], step=state.step,
                                      loss_weight=auxiliary_loss_weight, **loss_options)[0]
            for logits in _auxiliary_logits(updates))
        sums = jax.lax.psum(
            jnp.stack([micro_sum, jnp.asarray(micro_auxiliary, jnp.float32), micro_count]),
            parallel.DATA_AXIS)
        return sums[0] + sums[1], (sums, updates.get('batch_stats', batch_stats))

      (_, (sums, batch_stats)), grads = jax.value_and_grad(sum_fn, has_aux=True)(state.params)
      return (jax.tree.map(jnp.add, grad_sum, grads), cross_entropy_sum + sums[0],
              auxiliary_sum + sums[1], count + sums[2], batch_stats), None

    zeros = jax.tree.map(jnp.zeros_like, state.params)
    (grad_sum, cross_entropy_sum, auxiliary_sum, count, batch_stats), _ = jax.lax.scan(
        micro_step, (zeros, jnp.float32(0.0), jnp.float32(0.0), jnp.float32(0.0),
                     state.batch_stats),
        (jnp.arange(accumulation_steps), micro_batches))
    cross_entropy = losses.safe_divide(cross_entropy_sum, count)
    auxiliary = losses.safe_divide(auxiliary_sum, count)
    l2, l2_grads = jax.value_and_grad(losses.l2_regularization)(state.params,
                                                                config.weight_decay)
    grads = jax.tree.map(lambda g, g2: losses.safe_divide(g, count) + g2, grad_sum, l2_grads)
    return _apply_gradients(state, grads, batch_stats, cross_entropy + auxiliary + l2,
                            cross_entropy, l2)

  def _apply_gradients(state, grads, batch_stats, loss, cross_entropy, l2):
    # No psum/pmean of grads here: see the module docstring.
    multipliers = losses.gradient_multipliers(state.params, **multiplier_options)
    grads = jax.tree.map(lambda g, m: g * m if m != 1.0 else g, grads, multipliers)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if not config.fine_tune_batch_norm:
      batch_stats = state.batch_stats  # Frozen statistics stay exactly as loaded.
    metrics = {'loss': loss, 'cross_entropy': cross_entropy, 'l2_loss': l2,
               'learning_rate': schedule(state.step),
               'grad_norm': losses.global_norm(grads)}
    new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                           opt_state=opt_state,
                           ema_params=_updated_average(state.ema_params, params, state.step))
    return new_state, metrics

  def _updated_average(average, params, step):
    if average is None:
      return None
    # TF's ExponentialMovingAverage with num_updates: early on the decay is
    # smaller, so the average is not dominated by the random initialisation.
    step = step.astype(jnp.float32)
    decay = jnp.minimum(jnp.float32(config.ema_decay), (1.0 + step) / (10.0 + step))
    return jax.tree.map(lambda a, p: decay * a + (1.0 - decay) * p, average, params)

  step = jax.shard_map(per_device_step, mesh=mesh, in_specs=(P(), P(parallel.DATA_AXIS)),
                       out_specs=(P(), P()))
  return jax.jit(step, donate_argnums=(0,))


# --- Batch-norm statistics ---------------------------------------------------

def create_batch_norm_statistics(config: ml_collections.ConfigDict, mesh: Mesh):
  """`statistics(params, batch_stats, batches) -> batch_stats` ("precise BN").

  The population statistics of every batch-norm layer under `params`,
  recomputed over the given training batches, instead of the moving averages.
  A moving average with decay d remembers ~1/(1 − d) steps (3,333 at 0.9997)
  of statistics that drift as long as the weights move fast, so after a short
  run from scratch it describes early weights, not the final ones, and the
  evaluation collapses to one class. As in pycls and detectron2, each batch
  runs in training mode (batch moments, synchronised over 'data' like the
  train step), and the result is the mean of the batches' means and the mean
  of their second moments less the squared mean: the moments of all pixels
  seen, with the variance unbiased per batch as the train step stores it. A
  pure function of the parameters and the batches, so a resumed run gets the
  same statistics as an uninterrupted one.
  """
  # Decay 0 makes the model's "moving" statistics those of the batch alone.
  batch_config = config.copy_and_resolve_references()
  with batch_config.unlocked():
    batch_config.model.batch_norm_decay = 0.0
    batch_config.model.backbone_batch_norm_decay = 0.0
  model = create_model(batch_config, bn_axis_name=parallel.DATA_AXIS)

  def per_device_moments(params, batch_stats, sums, images):
    _, updates = model.apply({'params': params, 'batch_stats': batch_stats}, images,
                             train=True, mutable=['batch_stats'],
                             rngs={'dropout': jax.random.key(config.seed)})
    moments = _map_batch_norms(
        lambda s: {'moving_mean': s['moving_mean'],
                   'moving_variance': s['moving_variance'] + jnp.square(s['moving_mean'])},
        updates['batch_stats'])
    return jax.tree.map(jnp.add, sums, moments)

  add_moments = jax.jit(jax.shard_map(
      per_device_moments, mesh=mesh, in_specs=(P(), P(), P(), P(parallel.DATA_AXIS)),
      out_specs=P()), donate_argnums=(2,))

  @jax.jit
  def population(sums, count):
    def finish(s):
      mean = s['moving_mean'] / count
      second_moment = s['moving_variance'] / count
      return {'moving_mean': mean,
              'moving_variance': jnp.maximum(second_moment - jnp.square(mean), 0.0)}
    return _map_batch_norms(finish, sums)

  def statistics(params, batch_stats, batches):
    sums, count = jax.tree.map(jnp.zeros_like, batch_stats), 0
    for batch in batches:
      images = parallel.global_batch({'image': batch['image']}, mesh)['image']
      sums = add_moments(params, batch_stats, sums, images)
      count += 1
    if not count:
      raise ValueError('No training batches to recompute the batch-norm statistics from.')
    return population(sums, jnp.float32(count))

  return statistics


def _map_batch_norms(fn, batch_stats):
  """Applies `fn` to each `{'moving_mean', 'moving_variance'}` of a batch_stats tree."""
  if 'moving_mean' in batch_stats:
    return fn(batch_stats)
  return {name: _map_batch_norms(fn, child) for name, child in batch_stats.items()}


# --- Preemption --------------------------------------------------------------

class TrainingInterrupted(KeyboardInterrupt):
  """Ctrl-C stopped training after a checkpoint of the step it reached was saved."""


class PreemptionWatch:
  """Remembers a SIGTERM (TPU preemption) or a Ctrl-C so the loop can checkpoint and stop.

  A second Ctrl-C stops at once (KeyboardInterrupt): checkpoint writes are
  atomic, so the newest complete checkpoint is still the one resumed from.
  """

  def __init__(self):
    self.signal = None  # The first signal received.
    self._previous = {}
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT):
        self._previous[signum] = signal.signal(signum, self._handle)

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self.signal == signal.SIGINT:
      raise KeyboardInterrupt('interrupted twice: stopped without saving; the newest complete '
                              'checkpoint is kept, rerun the same command to resume from it.')
    logging.warning('Received signal %d: saving a checkpoint, then stopping.', signum)
    self.signal = signum

  def requested(self) -> bool:
    """True on every host as soon as any host got the signal."""
    return bool(parallel.sum_over_processes([int(self.signal is not None)])[0])

  def close(self):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}


# --- The loop ----------------------------------------------------------------

def _check_finite(pending_metrics, first_step: int):
  """Fetches queued per-step metrics; raises naming the first bad step."""
  fetched = jax.device_get(pending_metrics)
  for offset, metrics in enumerate(fetched):
    if not np.isfinite(metrics['loss']):
      step = first_step + offset
      raise NonFiniteLossError(
          f'The training loss is {metrics["loss"]} at step {step} (cross-entropy '
          f'{metrics["cross_entropy"]}, L2 {metrics["l2_loss"]}, learning rate '
          f'{metrics["learning_rate"]:.3g}). No checkpoint was written after it; the last '
          'good one is kept. Try a smaller config.learning_rate.')
  return fetched


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       train_source=None, eval_source=None, dataset_info=None) -> TrainState:
  """Trains (resuming from the workdir if it has checkpoints), evaluating as it goes.

  Args:
    config: the experiment config.
    workdir: checkpoints go to `<workdir>/checkpoints`, TensorBoard events to
      `<workdir>`, evaluation results to `<workdir>/eval_results.json`.
    train_source, eval_source: optional datasets of raw examples of this host
      (`{'image', 'label', 'name'}`); default: `config.dataset`'s splits.
    dataset_info: `config.dataset`'s `datasets.DatasetInfo` where the caller
      resolved it (main.py does, at startup); default: resolved here when the
      data comes from `config.dataset`.

  Returns:
    The final train state.
  """
  from deeplab_jax.data import datasets, input_pipeline  # pylint: disable=g-import-not-at-top
  from clu import metric_writers, periodic_actions  # pylint: disable=g-import-not-at-top

  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.global_batch_size, mesh)
  if train_source is None and dataset_info is None:
    dataset_info = datasets.check_num_classes(config)  # Fails now, not as a shape error later.
  # The model is built before anything is written: a model that cannot be built
  # leaves no half-made workdir behind.
  variables = initial_variables(config, mesh)
  state = create_train_state(config, variables, mesh)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if jax.process_index() == 0:
    writer.write_hparams({k: v for k, v in flatten_config(config).items()})
  checkpoints = checkpointing.CheckpointManager(workdir, config.keep_checkpoints)
  restored = checkpoints.restore_latest(state)
  if restored is not None:
    state = restored
    logging.info('Resuming from the checkpoint of step %d in %s.', int(state.step),
                 checkpoints.directory)
  else:
    state = create_train_state(config, initialise_from_checkpoint(config, variables, mesh), mesh)
  start_step = int(state.step)

  if train_source is None:
    train_source = datasets.load_source(config.dataset, config.dataset.train_split)
  train_data = input_pipeline.create_train_dataset(
      config, train_source, start_step=start_step, process_index=jax.process_index(),
      process_count=jax.process_count())
  train_step = create_train_step(config, mesh, resolve_class_weights(config, train_source))
  num_steps = int(config.num_train_steps)
  refresh_batch_norm = _batch_norm_refresher(config, mesh, train_source)
  evaluator = evaluate.Evaluator(config, mesh, source=eval_source, dataset_info=dataset_info)

  report_progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  preemption = PreemptionWatch()
  pending, pending_first = [], start_step
  timer_start, timer_step = time.perf_counter(), start_step
  step = start_step
  logging.info('Training steps %d..%d; global batch %d on %d devices (%d processes).',
               start_step, num_steps, config.global_batch_size, mesh.size, jax.process_count())
  try:
    batches = train_data.as_numpy_iterator() if step < num_steps else ()
    for _, batch in parallel.prefetch_to_devices(batches, mesh):
      state, metrics = train_step(state, batch)
      pending.append(metrics)
      step += 1
      report_progress(step)
      is_last = step >= num_steps
      stop = preemption.requested()
      save = stop or is_last or step % config.checkpoint_every_steps == 0
      log = is_last or step % config.log_every_steps == 0
      run_eval = is_last or step % config.eval_every_steps == 0
      if log or save or run_eval:
        fetched = _check_finite(pending, pending_first)
        if log:
          seconds = time.perf_counter() - timer_start
          steps_done = step - timer_step
          scalars = {k: float(v) for k, v in fetched[-1].items()}
          scalars['steps_per_sec'] = steps_done / seconds
          scalars['images_per_sec'] = steps_done * config.global_batch_size / seconds
          writer.write_scalars(step, scalars)
          timer_start, timer_step = time.perf_counter(), step
        pending, pending_first = [], step
      # A preemption's or Ctrl-C's checkpoint is written at once, with the
      # moving averages (the grace period is short); the rerun recomputes them.
      if refresh_batch_norm and not stop and (save or run_eval):
        state = refresh_batch_norm(state)
      if save:
        checkpoints.save(state)
      if stop:
        if preemption.signal == signal.SIGINT:
          raise TrainingInterrupted(f'interrupted at step {step}: its checkpoint is saved in '
                                    f'{checkpoints.directory}; rerun the same command to resume.')
        logging.warning('Stopped at step %d after a termination signal; the checkpoint is '
                        'saved, rerun the same command to resume.', step)
        break
      if run_eval:
        with report_progress.timed('eval'):
          evaluate.write_evaluation(evaluator(state.evaluated_variables, step), workdir, writer)
      if is_last:
        break
    else:
      if start_step >= num_steps:
        logging.info('The checkpoint is already at step %d >= num_train_steps=%d.',
                     start_step, num_steps)
  finally:
    preemption.close()
    checkpoints.close()
    writer.flush()
  return state


def _batch_norm_refresher(config, mesh: Mesh, train_source):
  """`refresh(state) -> state` with recomputed batch-norm statistics, or None.

  On when `config.precise_batch_norm_batches` > 0 and batch norm trains. The
  batches are the first ones of the run, read by a pipeline of their own: the
  same every time and on every rerun, and the training stream is untouched.
  Each host reads its own part of each global batch, as in training.
  """
  num_batches = int(config.get('precise_batch_norm_batches') or 0)
  if num_batches <= 0 or not config.fine_tune_batch_norm:
    return None
  from deeplab_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
  statistics = create_batch_norm_statistics(config, mesh)

  def refresh(state: TrainState) -> TrainState:
    batches = input_pipeline.create_train_dataset(
        config, train_source, start_step=0, process_index=jax.process_index(),
        process_count=jax.process_count()).take(num_batches)
    start = time.perf_counter()
    # Of the weights that evaluation, export and prediction use (the averaged
    # ones with config.ema_decay): training itself never reads the statistics.
    batch_stats = statistics(state.evaluated_variables['params'], state.batch_stats,
                             batches.as_numpy_iterator())
    logging.info('Recomputed the batch-norm statistics of step %d over %d training batches '
                 '(%.1f s).', int(state.step), num_batches, time.perf_counter() - start)
    return state.replace(batch_stats=batch_stats)

  return refresh


def flatten_config(config, prefix: str = '') -> Dict[str, Any]:
  """Config as flat 'a.b' → scalar/str entries (for TensorBoard hparams)."""
  flat = {}
  for key, value in config.items():
    name = f'{prefix}{key}'
    if isinstance(value, (ml_collections.ConfigDict, ml_collections.FrozenConfigDict)):
      flat.update(flatten_config(value, name + '.'))
    elif isinstance(value, (bool, int, float, str)):
      flat[name] = value
    else:
      flat[name] = str(value)
  return flat
