"""Bad settings and inputs end `main.py` with one clear line, before anything is written.

Each case is a real `python main.py` subprocess, as a user would run it. It must
exit non-zero (2 for a flag or setting, 1 for data and files), print one line
`main.py: error: ...` naming the field or file, print no traceback, and leave
the workdir it was given uncreated.
"""

import concurrent.futures
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = '--config=' + os.path.join(REPO, 'configs', 'quickstart.py') + ':tiny'
CUSTOM = '--config=' + os.path.join(REPO, 'configs', 'custom.py') + ':tiny'


def run_main(*flags, timeout=300, **environment):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu', **environment)
  return subprocess.run([sys.executable, os.path.join(REPO, 'main.py'), *flags], env=env,
                        capture_output=True, text=True, timeout=timeout, cwd=REPO)


def error_lines(result):
  return [line for line in result.stderr.splitlines() if line.startswith('main.py: ')]


@pytest.fixture(scope='module')
def custom_folder(tmp_path_factory):
  """A clean custom dataset: 3 classes listed, 4 + 2 small images."""
  root = tmp_path_factory.mktemp('custom')
  rng = np.random.default_rng(0)
  for split, count in (('train', 4), ('val', 2)):
    (root / 'images' / split).mkdir(parents=True)
    (root / 'labels' / split).mkdir(parents=True)
    for i in range(count):
      Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
          root / 'images' / split / f'{split}{i}.png')
      Image.fromarray(rng.integers(0, 3, (40, 50), dtype=np.uint8)).save(
          root / 'labels' / split / f'{split}{i}.png')
  (root / 'classes.txt').write_text('background\nleaf\nstem\n')
  return root


def cases(tmp, custom_folder):
  """(flags, the words the one error line must contain, exit status[, environment])."""
  a_file = tmp / 'a_file'
  a_file.write_text('not a folder')
  custom = [CUSTOM, f'--config.dataset.data_dir={custom_folder}', '--config.model.num_classes=3']
  return [
      ([QUICKSTART, '--config.nonexistent=3'], ['--config.nonexistent', "no field"], 2),
      ([QUICKSTART, '--config.model.nonexistent=3'], ['--config.model.nonexistent'], 2),
      ([QUICKSTART, '--config.num_train_steps=ten'], ['num_train_steps'], 2),
      ([QUICKSTART, '--config.train_crop_size=0,0'], ['config.train_crop_size', '>= 17'], 2),
      ([QUICKSTART, '--config.checkpoint_every_steps=0'], ['config.checkpoint_every_steps'], 2),
      ([QUICKSTART, '--config.keep_checkpoints=0'], ['config.keep_checkpoints', 'deleted'], 2),
      ([QUICKSTART, '--config.log_every_steps=-1'], ['config.log_every_steps'], 2),
      ([QUICKSTART, '--config.global_batch_size=0'], ['config.global_batch_size'], 2),
      ([QUICKSTART, '--config.num_train_steps=0'], ['config.num_train_steps'], 2),
      ([QUICKSTART, '--config.model.backbone=resnet50'], ['config.model.backbone', 'resnet50'], 2),
      ([QUICKSTART, '--config.model.output_stride=12'], ['config.model.output_stride'], 2),
      ([QUICKSTART, '--config.model.decoder_output_stride=8'],
       ['config.model.decoder_output_stride'], 2),
      ([QUICKSTART, '--config.model.num_classes=1'], ['config.model.num_classes'], 2),
      ([QUICKSTART, '--config.model.dtype=float64'], ['config.model.dtype'], 2),
      ([QUICKSTART, '--config.model.dense_prediction_cell=no_such_cell.json'],
       ['dense_prediction_cell', 'no_such_cell.json'], 1),
      ([QUICKSTART, '--config.learning_rate=-0.01'], ['config.learning_rate'], 2),
      ([QUICKSTART, '--config.optimizer=rmsprop'], ['config.optimizer', 'rmsprop'], 2),
      ([QUICKSTART, '--config.min_scale_factor=3.0'], ['config.min_scale_factor'], 2),
      ([QUICKSTART, '--config.top_k_percent_pixels=0.0'], ['config.top_k_percent_pixels'], 2),
      ([QUICKSTART, '--config.eval_scales=0.5,-1.0'], ['config.eval_scales'], 2),
      ([QUICKSTART, '--config.dataset.ignore_label=300'], ['config.dataset.ignore_label'], 2),
      # Settings that used to fail only at the first evaluation.
      ([QUICKSTART, '--config.eval_crop_size=65,65'], ['config.eval_crop_size', '161,161'], 2),
      ([QUICKSTART, '--config.eval_batch_size=3'], ['config.eval_batch_size', 'devices (2)'], 2,
       {'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}),
      ([QUICKSTART, '--config.dataset.name=imagenet'], ['imagenet'], 1),
      ([QUICKSTART, f'--config.init_checkpoint={tmp}/no_such/model.ckpt'],
       ['config.init_checkpoint', 'no_such'], 1),
      ([QUICKSTART, '--config=' + os.path.join(REPO, 'configs', 'no_such_config.py')],
       ['no_such_config.py'], 2),
      ([QUICKSTART.replace(':tiny', ':huge')], ['huge'], 2),
      ([QUICKSTART, '--mode=predict'], ['--images'], 2),
      ([QUICKSTART, '--mode=convert'], ['--tf_checkpoint'], 2),
      ([QUICKSTART, '--mode=export'], ['--output'], 2),
      # Workdirs: a file; a mistyped one that eval, predict and export must not create.
      ([QUICKSTART, f'--workdir={a_file}'], [str(a_file), 'is a file'], 2),
      ([QUICKSTART, '--mode=eval'], ['No checkpoint in', 'is --workdir right?'], 1),
      ([QUICKSTART, '--mode=predict', f'--images={a_file}'], ['No checkpoint in'], 1),
      ([QUICKSTART, '--mode=export', f'--output={tmp}/export'], ['No checkpoint in'], 1),
      ([QUICKSTART, '--mode=convert', f'--tf_checkpoint={tmp}/no_such/model.ckpt'],
       ['no_such/model.ckpt'], 1),
      # A custom folder: missing, and evaluation images larger than the crop.
      ([CUSTOM, f'--config.dataset.data_dir={tmp}/no_such_folder', '--config.model.num_classes=3'],
       ['no_such_folder'], 1),
      ([CUSTOM.replace(':tiny', ''), *custom[1:], '--config.eval_mode=whole',
        '--config.eval_crop_size=33,33'],
       ['config.eval_crop_size', '40x50'], 2),
      # Class weights that do not match the class count the folder gives.
      ([CUSTOM, f'--config.dataset.data_dir={custom_folder}', '--config.class_weights=1,2'],
       ['config.class_weights', '2 weights for 3 classes'], 2),
  ]


def test_bad_settings_and_inputs_fail_with_one_line_and_write_nothing(tmp_path, custom_folder):
  table = cases(tmp_path, custom_folder)
  assert len(table) >= 20

  def run(index):
    flags, words, status, *environment = table[index]
    workdir = tmp_path / f'workdir{index}'
    if not any(f.startswith('--workdir=') for f in flags):
      flags = [*flags, f'--workdir={workdir}']
    return workdir, flags, words, status, run_main(*flags, **(environment or [{}])[0])

  failures = []
  with concurrent.futures.ThreadPoolExecutor(2) as pool:  # Two cores.
    for workdir, flags, words, status, result in pool.map(run, range(len(table))):
      lines = error_lines(result)
      problems = []
      if result.returncode != status:
        problems.append(f'exit status {result.returncode}, expected {status}')
      if 'Traceback' in result.stderr + result.stdout:
        problems.append('a traceback')
      if len(lines) != 1 or not lines[0].startswith('main.py: error: '):
        problems.append(f'error lines {lines}')
      elif not all(word in lines[0] for word in words):
        problems.append(f'{lines[0]!r} lacks {words}')
      if os.path.exists(workdir):
        problems.append(f'{workdir} was created: {os.listdir(workdir)}')
      if problems:
        failures.append(f'{" ".join(flags[1:])}: {"; ".join(problems)}\n'
                        f'{result.stderr[-1500:]}')
  assert not failures, '\n\n'.join(failures)


def test_a_bad_label_found_while_training_is_one_line_naming_the_file(tmp_path, custom_folder):
  """A label id beyond the classes, met inside tf.data: TF wraps our error three
  times over; main.py prints it once."""
  import shutil  # pylint: disable=g-import-not-at-top
  folder = tmp_path / 'custom'
  shutil.copytree(custom_folder, folder)
  bad = folder / 'labels' / 'train' / 'train2.png'
  Image.fromarray(np.full((40, 50), 7, np.uint8)).save(bad)
  workdir = tmp_path / 'workdir'
  result = run_main(CUSTOM, f'--config.dataset.data_dir={folder}', '--config.model.num_classes=3',
                    f'--workdir={workdir}', '--config.num_train_steps=4',
                    '--config.global_batch_size=4', '--config.train_crop_size=33,33',
                    '--config.model.depth_multiplier=0.25')
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  lines = error_lines(result)
  assert len(lines) == 1, result.stderr[-3000:]
  assert str(bad) in lines[0] and '[7]' in lines[0], lines
  assert result.stderr.count(str(bad)) == 1
