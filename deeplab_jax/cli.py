"""DeepLab in JAX: train, evaluate, predict, export, check data, or convert a TF checkpoint.

The command line of `python main.py` and of the `deeplab-jax` command that
`pip install -e .` installs (the same flags, the same exit codes):

  python main.py --config=configs/quickstart.py --workdir=/tmp/deeplab_quickstart
  python main.py --config=configs/voc_mnv2.py --workdir=DIR --mode=eval [--continuous]
  python main.py --config=configs/voc_mnv2.py --workdir=DIR --mode=predict \\
      --images='photos/*.jpg' --output=OUT
  python main.py --config=configs/voc_mnv2.py --workdir=DIR --mode=convert \\
      --tf_checkpoint=deeplabv3_mnv2_pascal_train_aug/model.ckpt-30000
  python main.py --config=configs/voc_mnv2.py --workdir=DIR --mode=export --output=OUT
  python main.py --config=configs/custom.py --config.dataset.data_dir=DIR --mode=check_data

Several processes (multi-host TPU/GPU): pass --multiprocess, or set
JAX_COORDINATOR_ADDRESS (with JAX_NUM_PROCESSES and JAX_PROCESS_ID where the
platform cannot tell them); `jax.distributed.initialize()` is then called first.

Errors in the config, the data, a checkpoint or a path end the run with one
line on stderr naming the field or file and the fix: exit status 2 for a
setting or flag, 1 for the rest (--verbose adds the traceback). Every setting
is checked before anything is written or compiled. Ctrl-C while training saves
a checkpoint first (exit status 130); SIGTERM (preemption) does too (status 0).
"""

import gc
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Checkpoints, TensorBoard events and results go here.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'predict', 'convert', 'export', 'check_data'],
                  'train (with periodic evaluation) | eval | predict | convert | export | '
                  'check_data (scan the dataset and report every problem; needs no workdir).')
flags.DEFINE_bool('continuous', False, 'eval: follow new checkpoints until the final step.')
flags.DEFINE_string('images', None, 'predict: an image file, a directory or a glob pattern.')
flags.DEFINE_string('output', None, 'predict: output directory (default <workdir>/predictions); '
                    'export: output directory (required).')
flags.DEFINE_integer('resize_long_side', None, 'export: resize inputs so the long side is this.')
flags.DEFINE_bool('export_probabilities', False, 'export: also output class probabilities.')
flags.DEFINE_bool('cityscapes_label_ids', False,
                  'predict: write only Cityscapes label-id PNGs (for the evaluation server).')
flags.DEFINE_string('tf_checkpoint', None, 'convert: the TF checkpoint prefix to convert.')
flags.DEFINE_bool('multiprocess', False, 'Call jax.distributed.initialize() (multi-host).')
flags.DEFINE_bool('verbose', False, 'On an error, show the Python traceback too.')
flags.mark_flags_as_required(['config'])

USAGE_EXIT, ERROR_EXIT, INTERRUPTED_EXIT = 2, 1, 130
# Modes that read a workdir's checkpoints and must not create or change it.
_READING_MODES = ('eval', 'predict', 'export')


class UsageError(ValueError):
  """A flag is missing or wrong (exit status 2)."""


def _fail(message: str, status: int, what: str = 'error: '):
  program = os.path.basename(sys.argv[0])  # main.py, or deeplab-jax.
  print(f'{program}: {what}{message}', file=sys.stderr, flush=True)
  sys.exit(status)


def parse_flags(argv):
  """absl's flag parsing, with every mistake (also in --config.X overrides) as one line."""
  try:
    remaining = FLAGS(argv)
    FLAGS.config.keys()  # A config file that failed to load raises here, not when parsed.
    return remaining
  except flags.Error as error:
    _fail(_last_line(error), USAGE_EXIT)
  except (AttributeError, KeyError) as error:  # config_flags: a field the config lacks.
    field = str(error).strip('"\'')
    given = [a.split('=')[0] for a in argv[1:]
             if a.startswith('--config.') and field in a.split('=')[0].split('.')]
    _fail(f'{given[0] if given else field}: the config has no field {field!r} (see the '
          'config file and deeplab_jax/config_defaults.py for the fields there are).', USAGE_EXIT)
  except (ValueError, TypeError) as error:  # A value of the wrong type for a field.
    _fail(f'a --config override: {error}', USAGE_EXIT)
  except Exception as error:  # pylint: disable=broad-except  (config_flags: the file failed)
    _fail(f'--config: {_last_line(error)}', USAGE_EXIT)


def _last_line(error) -> str:
  """The line that says what is wrong: absl and config_flags wrap it in context
  (flag names, the attempted paths, or a whole traceback of the config file)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if len(lines) == 1:
    return lines[0]
  return f'{lines[0].split(":")[0]}: {lines[-1]}' if lines else type(error).__name__


def _initialise_distributed():
  if not (FLAGS.multiprocess or os.environ.get('JAX_COORDINATOR_ADDRESS')):
    return
  number = lambda name: int(os.environ[name]) if os.environ.get(name) else None
  jax.distributed.initialize(num_processes=number('JAX_NUM_PROCESSES'),
                             process_id=number('JAX_PROCESS_ID'))


def _default_data_dir(config, workdir: str):
  """The generated synthetic dataset lives in the workdir unless told otherwise."""
  if str(config.dataset.name).startswith('synthetic') and not config.dataset.data_dir:
    config.dataset.data_dir = os.path.join(workdir, 'tensorflow_datasets')


def _report(lines):
  if jax.process_index() == 0:
    print('\n'.join(lines), flush=True)


def _check_flags(mode: str) -> None:
  needs = {'predict': ('images',), 'convert': ('tf_checkpoint',), 'export': ('output',)}
  for flag in needs.get(mode, ()):
    if not getattr(FLAGS, flag):
      raise UsageError(f'--mode={mode} needs --{flag}=...')
  if mode != 'check_data' and not FLAGS.workdir:
    raise UsageError(f'--mode={mode} needs --workdir=DIR.')
  if FLAGS.resize_long_side is not None and FLAGS.resize_long_side < 1:
    raise UsageError(f'--resize_long_side={FLAGS.resize_long_side} must be a positive number '
                     'of pixels.')


def _check_workdir(mode: str, workdir: str, continuous: bool) -> None:
  """Refuses a workdir the mode cannot use, before anything is created in it."""
  from deeplab_jax import checkpointing  # pylint: disable=g-import-not-at-top
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UsageError(f'--workdir={workdir} is a file, not a directory.')
  if mode in _READING_MODES and not (mode == 'eval' and continuous):
    if checkpointing.find_checkpoint_dir(workdir) is None:
      raise FileNotFoundError(
          f'No checkpoint in {checkpointing.checkpoint_dir(workdir)}: is --workdir right? Train '
          'first (--mode=train) or convert a TF checkpoint into it (--mode=convert).')
  if mode == 'train' and FLAGS.config.init_checkpoint and not checkpointing.saved_steps(workdir):
    from deeplab_jax import train  # pylint: disable=g-import-not-at-top
    train.init_checkpoint_kind(FLAGS.config.init_checkpoint)  # Raises naming the path.


def _unwrap_data_error(error) -> str:
  """The message of the Python exception inside a tf.data error (TF repeats it)."""
  raised = re.findall(r'(?m)^(?:\w+\.)*\w*(?:Error|Problem|Exception): (.+)$', error.message)
  if raised:
    return raised[-1]
  return re.sub(r'\{\{function_node [^}]*\}\}\s*', '', error.message).splitlines()[0]


def main(argv):
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]} (flags are written --name=value).', USAGE_EXIT)
  from deeplab_jax import host_memory, xla_flags  # pylint: disable=g-import-not-at-top
  host_memory.keep_freed_memory()  # Before any thread allocates.
  xla_flags.add_cpu_flags()  # Before the XLA backend starts.
  try:
    _main()
    return
  except KeyboardInterrupt as interrupt:  # Training saves first and says so.
    failure = (str(interrupt) or 'interrupted.', INTERRUPTED_EXIT, '')
  except Exception as error:  # pylint: disable=broad-except  (sorted below)
    status = _expected_error_status(error)
    if status is None or FLAGS.verbose:
      raise
    message = _unwrap_data_error(error) if _is_tf_error(error) else str(error)
    failure = (message.strip() or type(error).__name__, status, 'error: ')
  # Out of the handler, the failed run's objects can be freed now: a tf.data
  # iterator left to the interpreter's shutdown waits there forever for the
  # Python function it was running.
  gc.collect()
  _fail(*failure)


def _is_tf_error(error) -> bool:
  return type(error).__module__.startswith('tensorflow') and hasattr(error, 'message')


def _expected_error_status(error):
  """The exit status of an error the user can fix, or None for a bug (traceback)."""
  from deeplab_jax import config_checks  # pylint: disable=g-import-not-at-top
  if isinstance(error, (UsageError, config_checks.ConfigError)):
    return USAGE_EXIT
  if isinstance(error, (ValueError, OSError, ArithmeticError, EOFError)) or _is_tf_error(error):
    return ERROR_EXIT
  if 'RESOURCE_EXHAUSTED' in str(error):  # Out of device memory: the batch or crop is too big.
    return ERROR_EXIT
  return None


def _main():
  config = FLAGS.config
  mode = FLAGS.mode
  _check_flags(mode)
  _initialise_distributed()
  from deeplab_jax import config_checks, config_defaults  # pylint: disable=g-import-not-at-top
  config_defaults.resolve_eval_crop_size(config)
  config_checks.check_config(config, mode, jax.device_count(), jax.process_count())
  workdir = os.path.abspath(os.path.expanduser(FLAGS.workdir)) if FLAGS.workdir else None
  if workdir:
    _check_workdir(mode, workdir, FLAGS.continuous)

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; leave accelerators to JAX.
  # pylint: disable-next=g-import-not-at-top
  from deeplab_jax import checkpointing, evaluate, predict_folder, train
  if mode == 'check_data':
    from deeplab_jax.data import check  # pylint: disable=g-import-not-at-top
    raise SystemExit(check.run_check_data(config))
  _default_data_dir(config, workdir)
  from deeplab_jax.data import datasets  # pylint: disable=g-import-not-at-top
  # Once, here; passed down. Logs the class count it takes from the data, and why.
  dataset_info = datasets.resolve_num_classes(config)
  if mode == 'train':
    config_checks.check_class_weights_count(config)
  if mode in ('train', 'eval'):
    split = config.dataset.eval_split
    config_checks.check_eval_crop_fits(
        config, datasets.largest_image_size(config.dataset, split),
        f'{config.dataset.name} {split}')
  if mode == 'train' and not jax.config.jax_compilation_cache_dir:
    # Recompiling the same step after a restart (preemption, resume) is free. Only
    # for training: the cache holds compiled code, and eval/predict/export only read
    # a workdir (which may come from elsewhere). A cache the user chose
    # (JAX_COMPILATION_CACHE_DIR) is kept: XLA's cache keys include its path.
    jax.config.update('jax_compilation_cache_dir', os.path.join(workdir, 'compilation_cache'))
  logging.info('Config:\n%s', config)
  checkpoints = checkpointing.checkpoint_dir(workdir)
  results = os.path.join(workdir, evaluate.RESULTS_FILE)

  if mode == 'train':
    state = train.train_and_evaluate(config, workdir, dataset_info=dataset_info)
    step = int(jax.device_get(state.step))
    done = (f'Trained to step {step}.' if step >= config.num_train_steps else
            f'Stopped at step {step} of {config.num_train_steps}; rerun the same command to resume.')
    _report([done,
             f'  checkpoints:      {checkpoints}',
             f'  TensorBoard:      tensorboard --logdir={workdir}',
             f'  eval results:     {results}',
             f'  eval images:      {os.path.join(workdir, evaluate.IMAGES_SUBDIR)}',
             f'  dataset:          {config.dataset.data_dir or "TFDS default data dir"}'])
  elif mode == 'eval':
    scores = evaluate.evaluate_checkpoints(config, workdir, continuous=FLAGS.continuous,
                                           dataset_info=dataset_info)
    from deeplab_jax import metrics  # pylint: disable=g-import-not-at-top
    _report([metrics.per_class_table(scores['per_class_iou'], scores['mean_iou']),
             f'Mean IoU {scores["mean_iou"]:.4f}, pixel accuracy '
             f'{scores["pixel_accuracy"]:.4f} at step {scores["step"]} '
             f'({scores["num_images"]} images).',
             f'  eval results:     {results}',
             f'  eval images:      {os.path.join(workdir, evaluate.IMAGES_SUBDIR)}',
             f'  TensorBoard:      tensorboard --logdir={os.path.join(workdir, "eval")}'])
  elif mode == 'predict':
    output = os.path.abspath(FLAGS.output or os.path.join(workdir, 'predictions'))
    written = predict_folder.predict_images(config, workdir, FLAGS.images, output,
                                     cityscapes_label_ids=FLAGS.cityscapes_label_ids)
    _report([f'Wrote {written.summary()} to {output} (checkpoint of step {written.step}).'])
  elif mode == 'convert':
    path = checkpointing.convert_tf_checkpoint(config, workdir, FLAGS.tf_checkpoint)
    _report([f'Converted {FLAGS.tf_checkpoint} into the Orbax checkpoint {path}.',
             f'  evaluate:  python main.py --config=... --workdir={workdir} --mode=eval'])
  elif mode == 'export':
    from deeplab_jax import export  # pylint: disable=g-import-not-at-top
    output = os.path.abspath(FLAGS.output)
    export.export_from_workdir(config, workdir, output, resize_long_side=FLAGS.resize_long_side,
                               with_probabilities=FLAGS.export_probabilities)
    _report([f'Exported the latest checkpoint of {workdir} to {output}:',
             f'  {os.path.join(output, "deeplab.jax_export")}  (jax.export, any image size)',
             f'  {os.path.join(output, "saved_model")}  (TensorFlow SavedModel)',
             f'  {os.path.join(output, "model.tflite")}  (MobileNetV2 configs)',
             f'  {os.path.join(output, "export_info.json")}'])


def run():
  """The `deeplab-jax` command (and `python main.py`)."""
  app.run(main, flags_parser=parse_flags)
