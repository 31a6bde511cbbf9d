"""Never lose a user's work (issue #5): `main.py` killed, preempted and rerun, for real.

Every run is a subprocess of `python main.py` on the generated `synthetic/tiny`
dataset, with a tiny MobileNetV2 (depth 0.25, 65x65 crops, batch 2, 8 steps).
One uninterrupted run is the reference; the faulted runs are SIGKILLed (at
random moments and in the middle of an Orbax checkpoint write) or SIGTERMed
(TPU preemption) and rerun with the same command until they finish. Their
final checkpoints must equal the reference's bit for bit.

All runs share one XLA compilation cache (the reference run's default
`<workdir>/compilation_cache`, passed to the others as JAX_COMPILATION_CACHE_DIR,
which main.py keeps) and one TFDS data dir, so only the reference compiles.
"""

import ast
import glob
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests_util import write_tf_checkpoint
import config_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 8
RESUMING = re.compile(r'Resuming from the checkpoint of step (\d+)')
TRAINING = re.compile(r'Training steps (\d+)\.\.(\d+)')
STEP_2_LOGGED = re.compile(r'\] \[2\] cross_entropy=')
TIMEOUT = 300  # Seconds for any one process (they take ~10-60 s).


# --- Running main.py ---------------------------------------------------------------

def config_flags(data_dir):
  return [f'--config={os.path.join(REPO, "configs", "quickstart.py")}:tiny',
          '--config.model.depth_multiplier=0.25', f'--config.num_train_steps={NUM_STEPS}',
          '--config.global_batch_size=2', '--config.train_crop_size=65,65',
          '--config.log_every_steps=1', '--config.eval_every_steps=1000',
          '--config.num_eval_images=2', '--config.eval_batch_size=2',
          '--config.num_prediction_images=1', f'--config.dataset.data_dir={data_dir}',
          # Statistics recomputed before every checkpoint must not break bit-identical resumes.
          '--config.precise_batch_norm_batches=2']


class Runs:
  """Starts `main.py` processes that share the reference's data and compilation cache."""

  def __init__(self, root):
    self.root = str(root)
    self.data_dir = os.path.join(self.root, 'tfds')
    self.reference = os.path.join(self.root, 'reference')
    self.cache_dir = os.path.join(self.reference, 'compilation_cache')  # main.py's default.
    self.count = 0

  def environment(self, shared_cache=True, **extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu',
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0', **extra)
    env.pop('TFDS_DATA_DIR', None)
    env.pop('JAX_COMPILATION_CACHE_DIR', None)
    if shared_cache:
      env['JAX_COMPILATION_CACHE_DIR'] = self.cache_dir
    return env

  def start(self, workdir, *flags, env=None, cwd=REPO):
    """A Popen whose `.log` file gets its stdout and stderr."""
    self.count += 1
    log = os.path.join(self.root, f'{os.path.basename(workdir)}-{self.count}.log')
    command = [sys.executable, os.path.join(REPO, 'main.py'), f'--workdir={workdir}',
               *config_flags(self.data_dir), *flags]
    with open(log, 'w') as out:
      process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                 env=env or self.environment())
    process.log = log
    return process

  def run(self, workdir, *flags, **kwargs):
    """Runs to the end; returns the log text (asserts success)."""
    process = self.start(workdir, *flags, **kwargs)
    try:
      returncode = process.wait(TIMEOUT)
    finally:
      stop(process)
    text = read(process.log)
    assert returncode == 0, text[-5000:]
    return text


def read(path):
  with open(path, errors='replace') as f:
    return f.read()


def stop(process):
  if process.poll() is None:
    process.kill()
    process.wait()


def wait_for(process, condition, what):
  """Polls `condition()` every 5 ms until true; fails if the process ends first."""
  deadline = time.monotonic() + TIMEOUT
  while not condition():
    if process.poll() is not None:
      pytest.fail(f'main.py ended (code {process.returncode}) before {what}:\n'
                  + read(process.log)[-3000:])
    if time.monotonic() > deadline:
      pytest.fail(f'Timed out waiting for {what}.')
    time.sleep(0.005)


def checkpoint_entries(workdir):
  directory = os.path.join(workdir, 'checkpoints')
  return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def complete_steps(workdir):
  """Finalised checkpoints: Orbax renames `<step>.orbax-checkpoint-tmp` to `<step>` last."""
  return sorted(int(name) for name in checkpoint_entries(workdir) if name.isdigit())


def writes_in_progress(workdir):
  return [name for name in checkpoint_entries(workdir) if '.orbax-checkpoint-tmp' in name]


def resumed_step(log_text):
  """The step the run started from (0 when fresh), or None if it never got that far."""
  match = TRAINING.search(log_text)
  if match is None:
    return None
  resumed = RESUMING.search(log_text)
  start = int(match.group(1))
  assert (resumed is None) == (start == 0), log_text[-3000:]
  if resumed is not None:
    assert int(resumed.group(1)) == start
  return start


# --- Reading what the runs wrote ----------------------------------------------------

def tiny_config():
  """The config that `config_flags` give main.py."""
  quickstart = config_files.module('quickstart')
  config = quickstart.get_config('tiny')
  config.model.depth_multiplier = 0.25
  config.num_train_steps = NUM_STEPS
  return config


def abstract_state(config):
  """A TrainState of ShapeDtypeStructs on the 1-device mesh: the restore template."""
  from deeplab_jax import parallel, train, variables  # pylint: disable=g-import-not-at-top
  sharding = jax.sharding.NamedSharding(parallel.make_mesh(), jax.sharding.PartitionSpec())
  place = lambda tree: jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
  model_variables = variables.abstract_variables(config, sharding)
  params, batch_stats = model_variables['params'], model_variables['batch_stats']
  opt_state = jax.eval_shape(train.create_optimizer(config).init, params)
  return train.TrainState(step=place(jax.ShapeDtypeStruct((), jax.numpy.int32)),
                          params=params, batch_stats=batch_stats,
                          opt_state=place(opt_state))


def final_state(workdir):
  """(step, {name: array}) of the latest checkpoint: params, batch_stats and opt_state."""
  from deeplab_jax import checkpointing  # pylint: disable=g-import-not-at-top
  manager = checkpointing.CheckpointManager(workdir)
  try:
    state = manager.restore_latest(abstract_state(tiny_config()))
  finally:
    manager.close()
  assert state is not None, f'no checkpoint in {workdir}'
  leaves = jax.tree_util.tree_flatten_with_path(
      {'params': state.params, 'batch_stats': state.batch_stats, 'opt_state': state.opt_state})[0]
  return int(state.step), {jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves}


def assert_bitwise_equal(expected, actual):
  """Equal bit for bit (the strictest criterion; it holds, see the tests)."""
  assert expected.keys() == actual.keys()
  differing = [name for name in expected
               if expected[name].dtype != actual[name].dtype
               or expected[name].tobytes() != actual[name].tobytes()]
  worst = max((float(np.max(np.abs(expected[n].astype(np.float64) - actual[n]))) for n in
               differing if expected[n].shape == actual[n].shape), default=0.0)
  assert not differing, (f'{len(differing)} of {len(expected)} arrays differ (max |diff| '
                         f'{worst:.3g}), e.g. {differing[:5]}')


def per_step_losses(workdir):
  """{step: [loss, ...]}: every training loss in the workdir's TensorBoard events.

  A step appears more than once when a killed run had logged it and its rerun
  repeated it from the previous checkpoint. Events of killed processes may end
  in a truncated record: what was read before it counts.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  losses = {}
  for path in sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))):
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          if value.tag == 'loss':
            losses.setdefault(event.step, []).append(
                np.float32(tf.make_ndarray(value.tensor)).item())
    except tf.errors.DataLossError:
      pass
  return losses


def entries_under(directory):
  """Every file and folder under `directory`, relative to it."""
  found = []
  for parent, folders, files in os.walk(directory):
    found += [os.path.relpath(os.path.join(parent, n), directory) for n in folders + files]
  return sorted(found)


# --- Fixtures -----------------------------------------------------------------------

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  return Runs(tmp_path_factory.mktemp('fault_tolerance'))


@pytest.fixture(scope='module')
def reference(runs):
  """One uninterrupted run, which generates the dataset and fills the compilation cache.

  It runs with HOME, TMPDIR and the working directory pointed at fresh empty
  folders, and with main.py's default compilation cache (in the workdir), so
  test_nothing_is_written_outside_the_workdir_and_data_dir can check them.
  """
  outside = {name: os.path.join(runs.root, name) for name in ('home', 'tmp', 'cwd')}
  for path in outside.values():
    os.makedirs(path)
  env = runs.environment(shared_cache=False, HOME=outside['home'], TMPDIR=outside['tmp'])
  log = runs.run(runs.reference, '--config.checkpoint_every_steps=1', env=env,
                 cwd=outside['cwd'])
  assert f'Trained to step {NUM_STEPS}.' in log
  assert resumed_step(log) == 0
  step, state = final_state(runs.reference)
  assert step == NUM_STEPS
  return {'log': log, 'state': state, 'outside': outside,
          'losses': per_step_losses(runs.reference)}


def signalled_then_rerun(runs, name, signum):
  """A run sent `signum` mid-training (only final and signal checkpoints), then rerun."""
  workdir = os.path.join(runs.root, name)
  flags = ['--config.checkpoint_every_steps=1000']  # No periodic checkpoint to fall back on.
  process = runs.start(workdir, *flags)
  try:
    # CLU logs "[2] cross_entropy=..." once step 2 is done: send the signal mid-training.
    wait_for(process, lambda: STEP_2_LOGGED.search(read(process.log)), 'step 2 was logged')
    process.send_signal(signum)
    returncode = process.wait(TIMEOUT)
  finally:
    stop(process)
  first = read(process.log)
  after_signal = complete_steps(workdir)
  second = runs.run(workdir, *flags)
  return {'workdir': workdir, 'returncode': returncode, 'first': first,
          'after_signal': after_signal, 'second': second}


@pytest.fixture(scope='module')
def preempted(runs, reference):
  del reference  # Needed first: the data and the compilation cache.
  return signalled_then_rerun(runs, 'preempted', signal.SIGTERM)


@pytest.fixture(scope='module')
def interrupted(runs, reference):
  del reference
  return signalled_then_rerun(runs, 'interrupted', signal.SIGINT)


@pytest.fixture(scope='module')
def killed(runs, reference):
  """The reference's command SIGKILLed three times, rerun after each, then run to the end.

  Kills: at a random moment up to 1 s after the process's first new checkpoint,
  after a seeded random delay from the start (imports, restore, compilation or
  the first steps), and as soon as an Orbax write of a new step is under way.
  Returns the workdir and one record per process.
  """
  del reference  # Needed first: the data and the compilation cache.
  workdir = os.path.join(runs.root, 'killed')
  flags = ['--config.checkpoint_every_steps=1']
  rng = random.Random(20240505)
  newest = lambda: max(complete_steps(workdir), default=0)

  def write_under_way(since):
    """A `<step>.orbax-checkpoint-tmp[-<time>]` folder (Orbax renames it to `<step>`
    last) of a new step, changed since `since`: an earlier kill's leftover does not count."""
    for name in writes_in_progress(workdir):
      try:
        changed = os.stat(os.path.join(workdir, 'checkpoints', name)).st_mtime
      except FileNotFoundError:
        continue
      if changed >= since and int(name.partition('.')[0]) > newest():
        return name
    return None

  records = []
  for fault in ('after a new checkpoint', 'after start', 'during a checkpoint write', None):
    record = {'fault': fault, 'before': complete_steps(workdir)}
    if fault is None:
      record['log'] = runs.run(workdir, *flags)
    else:
      launched = time.time()
      process = runs.start(workdir, *flags)
      try:
        if fault == 'after start':
          record['delay'] = rng.uniform(1.0, 8.0)  # Imports, restore, compilation, steps.
          time.sleep(record['delay'])
        elif fault == 'after a new checkpoint':
          before = max(record['before'], default=0)
          wait_for(process, lambda: newest() > before, 'a new checkpoint')
          record['delay'] = rng.uniform(0.0, 1.0)
          time.sleep(record['delay'])
        else:
          wait_for(process, lambda: write_under_way(launched), 'a checkpoint write')
          record['killed_writing'] = write_under_way(launched)
        if process.poll() is not None:
          pytest.fail(f'main.py finished before the kill {fault}:\n' + read(process.log)[-3000:])
        process.kill()
        process.wait()
      finally:
        stop(process)
      record['log'] = read(process.log)
    record['after'] = complete_steps(workdir)
    record['unfinished_writes'] = writes_in_progress(workdir)
    records.append(record)
  return {'workdir': workdir, 'records': records}


# --- Tests --------------------------------------------------------------------------

def test_killed_at_random_moments_and_during_a_checkpoint_write_resumes_to_the_same_parameters(
    killed, reference):
  """SIGKILL at random moments and in the middle of an Orbax write; rerun each time.

  Each process that got past restoring must have resumed from the newest
  *complete* checkpoint (never from step 0 once one exists, never from a
  half-written one), and the final parameters, batch statistics and optimizer
  state must equal the uninterrupted run's bit for bit.
  """
  workdir, records = killed['workdir'], killed['records']
  summary = [{k: v for k, v in r.items() if k != 'log'} for r in records]
  print('processes of the killed run:', *summary, sep='\n  ')
  for record in records:
    start = resumed_step(record['log'])
    if start is not None:
      assert start == max(record['before'], default=0), (summary, record['log'][-3000:])
  write_kill = records[2]
  assert write_kill['fault'] == 'during a checkpoint write'
  # The kill landed while that step was being written: it is still unfinished.
  assert write_kill['killed_writing'] in write_kill['unfinished_writes'], summary
  assert write_kill['after'] == write_kill['before'], summary
  final = records[-1]
  assert final['before'], summary  # The kills left checkpoints to resume from...
  assert resumed_step(final['log']) == max(final['before'])  # ...and the rerun used the newest.
  assert f'Trained to step {NUM_STEPS}.' in final['log']
  step, state = final_state(workdir)
  assert step == NUM_STEPS
  # Bitwise: restoring is exact, the data order and augmentation are a function
  # of the step, and XLA:CPU runs the same executable deterministically.
  assert_bitwise_equal(reference['state'], state)
  # Orbax reuses `<step>.orbax-checkpoint-tmp` when the rerun saves that step
  # again: no half-written checkpoint is left taking space.
  assert final['unfinished_writes'] == []


def test_sigterm_checkpoints_the_current_step_and_the_rerun_matches(preempted, reference, runs):
  """SIGTERM (TPU preemption): exit normally after checkpointing the step reached."""
  workdir = preempted['workdir']
  first = preempted['first']
  # As designed: the loop stops after the step in flight, saves, and main.py
  # returns normally (code 0) telling the user to rerun.
  assert preempted['returncode'] == 0, first[-3000:]
  assert 'Received signal 15' in first
  stopped = re.search(rf'Stopped at step (\d+) of {NUM_STEPS}; rerun the same command', first)
  assert stopped, first[-3000:]
  step = int(stopped.group(1))
  assert 2 <= step < NUM_STEPS
  # With checkpoint_every_steps=1000 that step's checkpoint exists only because of the signal.
  assert re.search(rf'Saved the checkpoint of step {step} in', first)
  assert len(re.findall(r'Saved the checkpoint of step', first)) == 1
  assert preempted['after_signal'] == [step]
  second = preempted['second']
  assert resumed_step(second) == step
  assert f'Trained to step {NUM_STEPS}.' in second
  assert complete_steps(workdir) == [step, NUM_STEPS]
  final_step, state = final_state(workdir)
  assert final_step == NUM_STEPS
  assert_bitwise_equal(reference['state'], state)


def test_ctrl_c_checkpoints_the_current_step_says_so_in_one_line_and_the_rerun_matches(
    interrupted, reference):
  """Ctrl-C (SIGINT) saves like SIGTERM, then exits 130 with one line, no traceback."""
  first = interrupted['first']
  assert interrupted['returncode'] == 130, first[-3000:]
  assert 'Traceback' not in first and 'KeyboardInterrupt' not in first
  stopped = re.findall(r'^main.py: interrupted at step (\d+): its checkpoint is saved in (.+); '
                       r'rerun the same command to resume.$', first, re.MULTILINE)
  assert len(stopped) == 1, first[-3000:]
  step = int(stopped[0][0])
  assert 2 <= step < NUM_STEPS
  assert stopped[0][1] == os.path.join(interrupted['workdir'], 'checkpoints')
  assert interrupted['after_signal'] == [step]
  assert resumed_step(interrupted['second']) == step
  final_step, state = final_state(interrupted['workdir'])
  assert final_step == NUM_STEPS
  assert_bitwise_equal(reference['state'], state)


def damage(workdir, step):
  """Truncates the largest file of a checkpoint's parameters (as a full disk might)."""
  files = glob.glob(os.path.join(workdir, 'checkpoints', str(step), 'params', '**', '*'),
                    recursive=True)
  largest = max((f for f in files if os.path.isfile(f)), key=os.path.getsize)
  with open(largest, 'r+b') as f:
    f.truncate(os.path.getsize(largest) // 2)


def test_a_damaged_checkpoint_is_moved_aside_and_saved_again(runs, reference, tmp_path):
  """Issue 16: a damaged newest step used to stay the "latest" (the rerun skipped
  saving it because its folder existed), so eval/predict/export silently used
  an older step; and with every step damaged nothing was saved again."""
  import shutil  # pylint: disable=g-import-not-at-top
  workdir = os.path.join(runs.root, 'damaged')
  shutil.copytree(runs.reference, workdir, ignore=shutil.ignore_patterns('compilation_cache'))
  steps = complete_steps(workdir)
  assert steps[-1] == NUM_STEPS and len(steps) == 2  # The quickstart keeps two.
  flags = ['--config.checkpoint_every_steps=1']

  damage(workdir, NUM_STEPS)
  log = runs.run(workdir, *flags)
  assert resumed_step(log) == steps[0]
  assert f'Moved the damaged checkpoint of step {NUM_STEPS}' in log
  assert f'Trained to step {NUM_STEPS}.' in log
  assert complete_steps(workdir) == steps
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', f'{NUM_STEPS}.damaged'))
  assert_bitwise_equal(reference['state'], final_state(workdir)[1])

  for step in steps:
    damage(workdir, step)
  log = runs.run(workdir, *flags)
  assert resumed_step(log) == 0  # Nothing readable left: from the start, saving as it goes.
  assert complete_steps(workdir) == steps
  assert_bitwise_equal(reference['state'], final_state(workdir)[1])
  log = runs.run(workdir, '--mode=eval')
  assert f'at step {NUM_STEPS} (2 images)' in log


def test_same_config_and_seed_give_identical_per_step_losses(reference, preempted, killed):
  """Per-step training losses (float32 from the TensorBoard events) are identical.

  The preempted run's first process is a second run from scratch with the same
  config and seed (only the checkpoint interval differs, which does not enter
  the computation); its rerun continues from a checkpoint. The killed run's
  events add the steps its processes logged, some by two processes.
  """
  expected = reference['losses']
  assert sorted(expected) == list(range(1, NUM_STEPS + 1))
  assert all(len(values) == 1 for values in expected.values())
  preempted_losses = per_step_losses(preempted['workdir'])
  assert sorted(preempted_losses) == list(range(1, NUM_STEPS + 1))
  killed_losses = per_step_losses(killed['workdir'])
  # Killed processes lose the events still queued in their writers (flushed at
  # the end, or every 10 events); the last process's steps are all there.
  last_start = max(killed['records'][-1]['before'])
  assert set(killed_losses) >= set(range(last_start + 1, NUM_STEPS + 1))
  for name, losses in (('preempted', preempted_losses), ('killed', killed_losses)):
    for step, values in losses.items():
      assert values == [expected[step][0]] * len(values), (name, step, values, expected[step])


def test_nothing_is_written_outside_the_workdir_and_data_dir(reference, runs):
  """The reference run (train + final eval) had HOME, TMPDIR and its cwd empty and fresh."""
  outside = reference['outside']
  # TensorFlow imports Keras, and Keras writes its default config
  # ~/.keras/keras.json on import when it is missing. That is Keras's, not ours
  # (TF is only our data reader); nothing else may appear.
  assert set(entries_under(outside['home'])) <= {'.keras', os.path.join('.keras', 'keras.json')}
  # TFDS's DatasetBuilder, built for a dataset not yet prepared (here: before
  # generating it), makes an empty `tmp*tfds` folder for dataset info from its
  # (disabled) GCS bucket and never removes it. Empty, and TFDS's; nothing else.
  leftovers = os.listdir(outside['tmp'])
  assert all(re.fullmatch(r'tmp\w+tfds', name) and not os.listdir(
      os.path.join(outside['tmp'], name)) for name in leftovers), leftovers
  assert entries_under(outside['cwd']) == []
  # The default TFDS data dir is ~/tensorflow_datasets: covered by HOME above.
  names = set(os.listdir(runs.reference))
  events = {n for n in names if n.startswith('events.out.tfevents.')}
  assert len(events) == 1
  assert names - events == {'checkpoints', 'compilation_cache', 'eval_results.json',
                            'eval_images'}
  assert set(os.listdir(runs.data_dir)) <= {'deeplab_synthetic', 'downloads'}


def test_convert_then_eval_end_to_end(runs, reference, tmp_path):
  """`--mode=convert` of a model-zoo-format TF checkpoint, then `--mode=eval` on it."""
  del reference  # The data and the compilation cache.
  from deeplab_jax import checkpointing  # pylint: disable=g-import-not-at-top
  template = abstract_state(tiny_config())
  variables = {'params': template.params, 'batch_stats': template.batch_stats}
  # The model zoo's names are our variable paths joined by '/', params and
  # batch statistics together.
  rng = np.random.default_rng(7)
  tensors = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    name = '/'.join(str(k.key) for k in path[1:])
    low = 0.5 if name.endswith('moving_variance') else -0.5
    tensors[name] = rng.uniform(low, low + 1.0, leaf.shape).astype(np.float32)
  prefix = write_tf_checkpoint(tmp_path / 'model.ckpt-30000', tensors)
  workdir = os.path.join(runs.root, 'converted')

  log = runs.run(workdir, '--mode=convert', f'--tf_checkpoint={prefix}')
  assert f'Converted {prefix} into the Orbax checkpoint {workdir}/checkpoints/0.' in log
  restored, step = checkpointing.restore_variables(workdir, variables)
  assert step == 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]:
    name = '/'.join(str(k.key) for k in path[1:])
    np.testing.assert_array_equal(np.asarray(leaf), tensors.pop(name), err_msg=name)
  assert not tensors  # Every TF variable was converted.

  log = runs.run(workdir, '--mode=eval')
  assert re.search(r'Mean IoU \d\.\d{4}, pixel accuracy \d\.\d{4} at step 0 \(2 images\)', log)
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    results = json.load(f)
  assert results['step'] == 0 and results['num_images'] == 2

  # Converting into a workdir that has training checkpoints is refused: eval,
  # predict and export would go on using the newest training step.
  trained = os.path.join(runs.root, 'trained_then_converted')
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(os.path.join(runs.reference, 'checkpoints'),
                  os.path.join(trained, 'checkpoints'))
  before = complete_steps(trained)
  process = runs.start(trained, '--mode=convert', f'--tf_checkpoint={prefix}')
  assert process.wait(TIMEOUT) == 1
  log = read(process.log)
  assert f'already has checkpoints (steps {before})' in log and 'Traceback' not in log
  assert complete_steps(trained) == before


# --- Static: no pickle anywhere near checkpoints or data -----------------------------

_PICKLE_MODULES = {'pickle', 'cPickle', '_pickle', 'cloudpickle', 'dill', 'joblib', 'shelve',
                   'torch'}


def pickle_uses(path):
  """(line, what) for each way `path` could unpickle data."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(node.lineno, f'import {a.name}') for a in node.names
                if a.name.split('.')[0] in _PICKLE_MODULES]
    elif isinstance(node, ast.ImportFrom) and node.module:
      if node.module.split('.')[0] in _PICKLE_MODULES:
        found.append((node.lineno, f'from {node.module} import ...'))
    elif isinstance(node, ast.Call):
      function = ast.unparse(node.func)
      if re.search(r'(^|\.)(pickle|cloudpickle|dill|joblib|torch)\.(load|loads)$', function) \
          or function.endswith(('Unpickler', 'read_pickle')):
        found.append((node.lineno, function))
      for keyword in node.keywords:
        # np.load's default is allow_pickle=False; only an explicit True (or a
        # value that is not the constant False) opens the door.
        if keyword.arg == 'allow_pickle' and not (
            isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
          found.append((node.lineno, f'{function}(allow_pickle={ast.unparse(keyword.value)})'))
  return found


def test_no_pickle_in_checkpoints_or_data_loading():
  paths = sorted(glob.glob(os.path.join(REPO, 'deeplab_jax', '**', '*.py'), recursive=True))
  paths.append(os.path.join(REPO, 'main.py'))
  assert len(paths) > 20
  problems = [f'{os.path.relpath(path, REPO)}:{line}: {what}'
              for path in paths for line, what in pickle_uses(path)]
  assert not problems, 'Pickle can run code from a file:\n' + '\n'.join(problems)


def test_the_pickle_scan_finds_what_it_should(tmp_path):
  bad = tmp_path / 'bad.py'
  bad.write_text('import pickle\nimport numpy as np\nfrom joblib import load\n'
                 'x = np.load("a.npy", allow_pickle=True)\ny = np.load("b.npy")\n'
                 'z = np.load("c.npy", allow_pickle=False)\nw = pickle.loads(b"")\n')
  assert [line for line, _ in pickle_uses(str(bad))] == [1, 3, 4, 7]
