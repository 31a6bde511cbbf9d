"""DeepLab in JAX: train, evaluate, predict, export, check data, or convert a TF checkpoint.

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
"""

import os

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
                  'predict: write Cityscapes label ids (for the evaluation server).')
flags.DEFINE_string('tf_checkpoint', None, 'convert: the TF checkpoint prefix to convert.')
flags.DEFINE_bool('multiprocess', False, 'Call jax.distributed.initialize() (multi-host).')
flags.mark_flags_as_required(['config'])


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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  from deeplab_jax import host_memory, xla_flags  # pylint: disable=g-import-not-at-top
  host_memory.keep_freed_memory()  # Before any thread allocates.
  xla_flags.add_cpu_flags()  # Before the XLA backend starts.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; leave accelerators to JAX.
  _initialise_distributed()
  from deeplab_jax import checkpointing, evaluate, predict, train  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  if FLAGS.mode == 'check_data':
    from deeplab_jax.data import check  # pylint: disable=g-import-not-at-top
    raise SystemExit(check.run_check_data(config))
  if not FLAGS.workdir:
    raise app.UsageError(f'--mode={FLAGS.mode} needs --workdir.')
  workdir = os.path.abspath(os.path.expanduser(FLAGS.workdir))
  # Recompiling the same step after a restart (preemption, resume) is free.
  # A cache the user chose (JAX_COMPILATION_CACHE_DIR) is kept: it can serve several
  # workdirs, and XLA's cache keys include the cache's path.
  if not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir', os.path.join(workdir, 'compilation_cache'))
  _default_data_dir(config, workdir)
  logging.info('Config:\n%s', config)
  checkpoints = checkpointing.checkpoint_dir(workdir)
  results = os.path.join(workdir, evaluate.RESULTS_FILE)

  if FLAGS.mode == 'train':
    state = train.train_and_evaluate(config, workdir)
    step = int(jax.device_get(state.step))
    done = (f'Trained to step {step}.' if step >= config.num_train_steps else
            f'Stopped at step {step} of {config.num_train_steps}; rerun the same command to resume.')
    _report([done,
             f'  checkpoints:      {checkpoints}',
             f'  TensorBoard:      tensorboard --logdir={workdir}',
             f'  eval results:     {results}',
             f'  eval images:      {os.path.join(workdir, evaluate.IMAGES_SUBDIR)}',
             f'  dataset:          {config.dataset.data_dir or "TFDS default data dir"}'])
  elif FLAGS.mode == 'eval':
    scores = evaluate.evaluate_checkpoints(config, workdir, continuous=FLAGS.continuous)
    _report([f'Mean IoU {scores["mean_iou"]:.4f}, pixel accuracy '
             f'{scores["pixel_accuracy"]:.4f} at step {scores["step"]} '
             f'({scores["num_images"]} images).',
             f'  eval results:     {results}',
             f'  eval images:      {os.path.join(workdir, evaluate.IMAGES_SUBDIR)}',
             f'  TensorBoard:      tensorboard --logdir={os.path.join(workdir, "eval")}'])
  elif FLAGS.mode == 'predict':
    if not FLAGS.images:
      raise app.UsageError('--mode=predict needs --images=PATH_OR_GLOB.')
    output = os.path.abspath(FLAGS.output or os.path.join(workdir, 'predictions'))
    written = predict.predict_images(config, workdir, FLAGS.images, output,
                                     cityscapes_label_ids=FLAGS.cityscapes_label_ids)
    _report([f'Wrote {len(written) // 2} label PNGs and overlays to {output}.'])
  elif FLAGS.mode == 'convert':
    if not FLAGS.tf_checkpoint:
      raise app.UsageError('--mode=convert needs --tf_checkpoint=PREFIX.')
    path = checkpointing.convert_tf_checkpoint(config, workdir, FLAGS.tf_checkpoint)
    _report([f'Converted {FLAGS.tf_checkpoint} into the Orbax checkpoint {path}.',
             f'  evaluate:  python main.py --config=... --workdir={workdir} --mode=eval'])

  elif FLAGS.mode == 'export':
    if not FLAGS.output:
      raise app.UsageError('--mode=export needs --output=DIR.')
    from deeplab_jax import export  # pylint: disable=g-import-not-at-top
    output = os.path.abspath(FLAGS.output)
    export.export_from_workdir(config, workdir, output, resize_long_side=FLAGS.resize_long_side,
                               with_probabilities=FLAGS.export_probabilities)
    _report([f'Exported the latest checkpoint of {workdir} to {output}:',
             f'  {os.path.join(output, "deeplab.jax_export")}  (jax.export, any image size)',
             f'  {os.path.join(output, "saved_model")}  (TensorFlow SavedModel)',
             f'  {os.path.join(output, "model.tflite")}  (MobileNetV2 configs)',
             f'  {os.path.join(output, "export_info.json")}'])


if __name__ == '__main__':
  app.run(main)
