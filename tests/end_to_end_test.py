"""main.py end to end on the generated dataset: train → eval → predict, in subprocesses."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
from PIL import ImageOps
import pytest

from deeplab_jax import colormaps

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(workdir, *flags, expect_ok=True, shared_cache=True):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
  env.pop('JAX_COMPILATION_CACHE_DIR', None)
  if shared_cache:  # Else main.py's default: <workdir>/compilation_cache when training.
    env['JAX_COMPILATION_CACHE_DIR'] = os.path.join(workdir, '..', 'xla_cache')
  command = [sys.executable, os.path.join(REPO, 'main.py'),
             '--config=' + os.path.join(REPO, 'configs', 'quickstart.py') + ':tiny',
             '--workdir=' + workdir, '--config.num_train_steps=2',
             '--config.global_batch_size=2', '--config.train_crop_size=65,65',
             '--config.checkpoint_every_steps=1', '--config.eval_every_steps=100', *flags]
  result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900,
                          cwd=REPO)
  if expect_ok:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
  return result


@pytest.fixture(scope='module')
def trained_workdir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('run') / 'workdir')
  result = run_main(workdir)
  return workdir, result.stdout


def test_train_writes_checkpoints_results_and_pictures(trained_workdir):
  workdir, stdout = trained_workdir
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2']
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    results = json.load(f)
  assert results['step'] == 2
  assert results['num_images'] == 4  # The tiny variant's num_eval_images.
  assert 0.0 <= results['mean_iou'] <= 1.0
  assert set(results['per_class_iou']) == {
      'background', 'disc', 'square', 'triangle', 'ring', 'bar'}
  pictures = sorted(os.listdir(os.path.join(workdir, 'eval_images')))
  assert len(pictures) == 4  # Two samples, the confusion matrix, the per-class IoU chart.
  assert pictures[-2:] == ['step0000002_confusion_matrix.png', 'step0000002_per_class_iou.png']
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir))
  assert os.path.join(workdir, 'checkpoints') in stdout
  assert os.path.join(workdir, 'eval_results.json') in stdout


def test_eval_mode_restores_the_latest_checkpoint(trained_workdir):
  # In slide mode (training evaluated whole images): windows of a 65 px crop
  # over images up to 160 px, which whole-image evaluation would refuse.
  workdir, _ = trained_workdir
  os.remove(os.path.join(workdir, 'eval_results.json'))
  result = run_main(workdir, '--mode=eval', '--config.eval_mode=slide',
                    '--config.eval_crop_size=65,65', '--config.eval_slide_stride=40,40')
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    results = json.load(f)
  assert results['step'] == 2 and results['eval_mode'] == 'slide'
  assert 'Mean IoU' in result.stdout
  lines = result.stdout.splitlines()  # The per-class table, then the summary.
  start = lines.index(next(line for line in lines if line.split() == ['class', 'IoU']))
  assert [line.split()[0] for line in lines[start + 1:start + 7]] == [
      'background', 'disc', 'square', 'triangle', 'ring', 'bar']
  mean_line = lines[start + 7]
  assert mean_line.startswith('mean IoU') and f'{results["mean_iou"]:.4f}' in mean_line


def test_predict_mode_writes_labels_at_the_input_size(trained_workdir, tmp_path):
  workdir, _ = trained_workdir
  images = tmp_path / 'images'
  images.mkdir()
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(images / 'small.png')
  # Larger than the 161x161 eval crop: resized to fit, labels resized back.
  Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(
      images / 'large.jpg')
  output = tmp_path / 'out'
  run_main(workdir, '--mode=predict', f'--images={images}/*', f'--output={output}')
  assert sorted(os.listdir(output)) == ['large.png', 'overlays', 'prediction_info.json',
                                        'small.png']
  assert sorted(os.listdir(output / 'overlays')) == ['large.png', 'small.png']
  with Image.open(output / 'large.png') as labels:
    assert labels.mode == 'P' and labels.size == (300, 200)
    assert np.asarray(labels).max() < 6
  with Image.open(output / 'overlays' / 'small.png') as overlay:
    assert overlay.size == (70, 50) and overlay.mode == 'RGB'

  (images / 'broken.png').write_bytes(b'not an image')
  result = run_main(workdir, '--mode=predict', f'--images={images}/broken.png',
                    f'--output={output}', expect_ok=False)
  assert result.returncode != 0
  assert 'broken.png: cannot read this file as an image' in result.stderr


def files_and_bytes(folder):
  return {os.path.relpath(os.path.join(parent, name), folder):
          open(os.path.join(parent, name), 'rb').read()
          for parent, _, names in os.walk(folder) for name in names}


def test_predict_never_overwrites_inputs_or_files_it_did_not_write(trained_workdir, tmp_path):
  """Issue 16: predicting into the photos' own folder, colliding names, and a
  folder holding someone else's files are refused before anything is written."""
  workdir, _ = trained_workdir
  photos = tmp_path / 'photos'
  photos.mkdir()
  rng = np.random.default_rng(1)
  for name in ('cat.png', 'dog.jpg'):
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photos / name)
  before = files_and_bytes(photos)

  # The label of cat.png would be photos/cat.png: the photo itself.
  result = run_main(workdir, '--mode=predict', f'--images={photos}', f'--output={photos}',
                    expect_ok=False)
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert f'would overwrite the input image {photos}/cat.png' in result.stderr
  assert files_and_bytes(photos) == before

  # cat.jpg and cat.png would both be written as cat.png.
  Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photos / 'cat.jpg')
  output = tmp_path / 'out'
  result = run_main(workdir, '--mode=predict', f'--images={photos}', f'--output={output}',
                    expect_ok=False)
  assert result.returncode == 1 and 'would both be written as' in result.stderr
  assert not output.exists()
  os.remove(photos / 'cat.jpg')

  # A photo named like another's overlay: overlays have their own folder.
  Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(
      photos / 'dog_overlay.png')
  run_main(workdir, '--mode=predict', f'--images={photos}', f'--output={output}')
  names = ['cat.png', 'dog.png', 'dog_overlay.png']
  assert sorted(os.listdir(output / 'overlays')) == names
  assert sorted(n for n in os.listdir(output) if n.endswith('.png')) == names
  # Running again into the same folder replaces its own outputs...
  run_main(workdir, '--mode=predict', f'--images={photos}', f'--output={output}')
  # ...but not a file someone else put where an output would go.
  Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photos / 'bird.jpg')
  (output / 'bird.png').write_bytes(b'my notes')
  result = run_main(workdir, '--mode=predict', f'--images={photos}', f'--output={output}',
                    expect_ok=False)
  assert result.returncode == 1 and f'{output}/bird.png exists and was not written by' in (
      result.stderr)
  assert (output / 'bird.png').read_bytes() == b'my notes'


def test_cityscapes_label_ids_are_the_only_pngs_written(trained_workdir, tmp_path):
  """The official evaluator reads every PNG under its results folder: no overlays there."""
  workdir, _ = trained_workdir
  photos = tmp_path / 'photos'
  photos.mkdir()
  Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(
      photos / 'frankfurt_000000_000294_leftImg8bit.png')
  output = tmp_path / 'results'
  result = run_main(workdir, '--mode=predict', f'--images={photos}', f'--output={output}',
                    '--cityscapes_label_ids')
  assert sorted(os.listdir(output)) == ['frankfurt_000000_000294_leftImg8bit.png',
                                        'prediction_info.json']
  assert 'Wrote 1 label PNGs to' in result.stdout


def test_eval_and_predict_leave_the_workdir_they_read_unchanged_but_for_results(
    trained_workdir, tmp_path):
  """Issue 16: they wrote compiled code into `<workdir>/compilation_cache` and
  loaded it from there, so a workdir from elsewhere was code that ran."""
  workdir, _ = trained_workdir
  checkpoints = files_and_bytes(os.path.join(workdir, 'checkpoints'))
  Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / 'photo.png')
  run_main(workdir, '--mode=eval', shared_cache=False)
  run_main(workdir, '--mode=predict', f'--images={tmp_path}/photo.png',
           f'--output={tmp_path}/out', shared_cache=False)
  assert not os.path.exists(os.path.join(workdir, 'compilation_cache'))
  assert files_and_bytes(os.path.join(workdir, 'checkpoints')) == checkpoints


def test_predict_reads_phone_photos_upright_and_16_bit_scans(trained_workdir, tmp_path):
  workdir, _ = trained_workdir
  images = tmp_path / 'images'
  images.mkdir()
  # Stored 70 wide and 50 high, tagged "turn 90 degrees clockwise to view".
  tags = Image.Exif()
  tags[0x0112] = 6
  Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(
      images / 'phone.jpg', exif=tags.tobytes())
  gradient = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (30, 1))
  Image.fromarray(gradient).save(images / 'scan.png')  # 16-bit grey.
  output = tmp_path / 'out'
  run_main(workdir, '--mode=predict', f'--images={images}', f'--output={output}')

  def image_under_overlay(stem):
    """The image an overlay was blended from: overlay = (image + label colour) / 2."""
    with Image.open(output / f'{stem}.png') as labels, \
         Image.open(output / 'overlays' / f'{stem}.png') as overlay:
      colours = colormaps.colorize(np.asarray(labels), 'pascal').astype(int)
      return 2 * np.asarray(overlay).astype(int) - colours

  with Image.open(images / 'phone.jpg') as stored:
    upright = np.asarray(ImageOps.exif_transpose(stored).convert('RGB')).astype(int)
  assert upright.shape == (70, 50, 3)
  assert np.abs(image_under_overlay('phone') - upright).max() <= 1
  scan = np.repeat(np.round(gradient / 257)[..., None], 3, axis=2)
  assert np.abs(image_under_overlay('scan') - scan).max() <= 1
