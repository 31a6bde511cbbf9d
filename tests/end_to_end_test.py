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


def run_main(workdir, *flags, expect_ok=True):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             JAX_COMPILATION_CACHE_DIR=os.path.join(workdir, '..', 'xla_cache'),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')
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
  pictures = os.listdir(os.path.join(workdir, 'eval_images'))
  assert len(pictures) == 2
  assert any(name.startswith('events.out.tfevents') for name in os.listdir(workdir))
  assert os.path.join(workdir, 'checkpoints') in stdout
  assert os.path.join(workdir, 'eval_results.json') in stdout


def test_eval_mode_restores_the_latest_checkpoint(trained_workdir):
  workdir, _ = trained_workdir
  os.remove(os.path.join(workdir, 'eval_results.json'))
  result = run_main(workdir, '--mode=eval')
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    assert json.load(f)['step'] == 2
  assert 'Mean IoU' in result.stdout


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
  assert sorted(os.listdir(output)) == ['large.png', 'large_overlay.png', 'small.png',
                                        'small_overlay.png']
  with Image.open(output / 'large.png') as labels:
    assert labels.mode == 'P' and labels.size == (300, 200)
    assert np.asarray(labels).max() < 6
  with Image.open(output / 'small_overlay.png') as overlay:
    assert overlay.size == (70, 50) and overlay.mode == 'RGB'

  (images / 'broken.png').write_bytes(b'not an image')
  result = run_main(workdir, '--mode=predict', f'--images={images}/broken.png',
                    f'--output={output}', expect_ok=False)
  assert result.returncode != 0
  assert 'broken.png: cannot read this file as an image' in result.stderr


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
         Image.open(output / f'{stem}_overlay.png') as overlay:
      colours = colormaps.colorize(np.asarray(labels), 'pascal').astype(int)
      return 2 * np.asarray(overlay).astype(int) - colours

  with Image.open(images / 'phone.jpg') as stored:
    upright = np.asarray(ImageOps.exif_transpose(stored).convert('RGB')).astype(int)
  assert upright.shape == (70, 50, 3)
  assert np.abs(image_under_overlay('phone') - upright).max() <= 1
  scan = np.repeat(np.round(gradient / 257)[..., None], 3, axis=2)
  assert np.abs(image_under_overlay('scan') - scan).max() <= 1
