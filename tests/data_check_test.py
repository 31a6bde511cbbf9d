"""`check_data`: one scan of a dataset finds every problem and names its file."""

import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

import config_files
from deeplab_jax import config_defaults as defaults
from deeplab_jax import colormaps
from deeplab_jax.data import check
from deeplab_jax.data import check_report
from deeplab_jax.data import colour_labels
from deeplab_jax.data import datasets
import data_ade20k_test

custom_config = config_files.module('custom')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLASSES = ('background', 'road', 'tree')


def image_pixels(seed, height, width):
  pixels = np.zeros((height, width, 3), np.uint8)
  pixels[..., 0] = (29 * seed + 20) % 256
  pixels[..., 1] = (np.arange(width) * 7 % 256).astype(np.uint8)[None, :]
  pixels[..., 2] = (np.arange(height) * 5 % 256).astype(np.uint8)[:, None]
  return pixels


def label_ids(height, width, object_id=1):
  ids = np.zeros((height, width), np.uint8)
  ids[height // 2:, : width // 2] = object_id
  ids[0] = 255  # An ignored row.
  return ids


def write_image(path, pixels, format_=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(pixels).save(path, format=format_)


def write_label(path, ids):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(ids, mode='L').save(path)


def truncated_jpeg(path, height, width):
  noise = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(noise).save(buffer, format='JPEG', quality=90)
  data = buffer.getvalue()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(data[: len(data) // 2])  # The header survives; the scan is cut.


def voc_colour_mask(ids):
  return colormaps.get_colormap('pascal')[ids]


def write_broken_folder(root):
  """A folder with one of each problem, and good files around them."""
  root = os.fspath(root)
  train_images = os.path.join(root, 'images', 'train')
  train_labels = os.path.join(root, 'labels', 'train')
  val_images = os.path.join(root, 'images', 'val')
  val_labels = os.path.join(root, 'labels', 'val')
  for seed, (name, object_id) in enumerate([('good_01', 1), ('good_02', 1)]):
    write_image(os.path.join(train_images, name + '.png'),
                image_pixels(seed, 40, 60))
    write_label(os.path.join(train_labels, name + '.png'),
                label_ids(40, 60, object_id))
  # Corrupt: a JPEG cut in half.
  truncated_jpeg(os.path.join(train_images, 'broken.jpg'), 48, 64)
  write_label(os.path.join(train_labels, 'broken.png'), label_ids(48, 64))
  # A VOC-style colour mask instead of class ids.
  write_image(os.path.join(train_images, 'colour.png'), image_pixels(3, 30, 30))
  write_image(os.path.join(train_labels, 'colour.png'),
              voc_colour_mask(label_ids(30, 30, object_id=15)))
  # Values that are neither a class id (< 3) nor the ignore label 255.
  write_image(os.path.join(train_images, 'bad_ids.png'), image_pixels(4, 20, 20))
  bad = label_ids(20, 20)
  bad[5, 5:9] = 7
  bad[6, 5] = 128
  write_label(os.path.join(train_labels, 'bad_ids.png'), bad)
  # The label is not the image's size.
  write_image(os.path.join(train_images, 'wrong_size.png'),
              image_pixels(5, 20, 30))
  write_label(os.path.join(train_labels, 'wrong_size.png'), label_ids(20, 24))
  # No label at all.
  write_image(os.path.join(train_images, 'no_label.jpg'), image_pixels(6, 20, 20))
  # Validation: one good image, and one whose label is all ignore.
  write_image(os.path.join(val_images, 'val_01.png'), image_pixels(7, 40, 50))
  write_label(os.path.join(val_labels, 'val_01.png'), label_ids(40, 50, 2))
  write_image(os.path.join(val_images, 'val_02.png'), image_pixels(8, 40, 50))
  write_label(os.path.join(val_labels, 'val_02.png'),
              np.full((40, 50), 255, np.uint8))
  # An empty split.
  os.makedirs(os.path.join(root, 'images', 'test'))
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('\n'.join(CLASSES) + '\n')
  return root


def custom_dataset_config(root, **overrides):
  config = defaults.get_config().dataset
  config.name = 'custom'
  config.data_dir = os.fspath(root)
  config.train_split = 'train'
  config.eval_split = 'val'
  for key, value in overrides.items():
    config[key] = value
  return config


@pytest.fixture(scope='module')
def broken(tmp_path_factory):
  root = write_broken_folder(tmp_path_factory.mktemp('broken'))
  report = check.check_dataset(custom_dataset_config(root), num_classes=3,
                               train_crop_size=(33, 33),
                               eval_crop_size=(65, 65))
  return root, report


def only(report, kind):
  problems = report.problems_of(kind)
  assert len(problems) == 1, (kind, problems)
  return problems[0]


def test_every_problem_is_found_in_one_scan(broken):
  root, report = broken
  assert not report.ok
  paths = {p.kind: os.path.relpath(p.path, root) if p.path else None
           for p in report.problems}
  assert paths['corrupt_image'] == 'images/train/broken.jpg'
  assert paths['colour_label'] == 'labels/train/colour.png'
  assert paths['label_values'] == 'labels/train/bad_ids.png'
  assert paths['size_mismatch'] == 'labels/train/wrong_size.png'
  assert paths['missing_label'] == 'labels/train/no_label.png'
  assert paths['empty_split'] == 'images/test'
  assert paths['all_ignore'] == 'labels/val/val_02.png'
  assert report.num_errors == 6
  assert report.num_errors + report.num_warnings == len(report.problems)


def test_messages_say_what_and_how_to_fix(broken):
  root, report = broken
  assert 'truncated' in only(report, 'corrupt_image').message
  colour = only(report, 'colour_label')
  assert 'pascal palette' in colour.message and '[0, 15, 255]' in colour.message
  assert colour.fix.endswith(
      "python -c 'import sys; from deeplab_jax.data import colour_labels; "
      "colour_labels.convert_colour_label(sys.argv[1], \"pascal\")' "
      f"{os.path.join(root, 'labels', 'train', 'colour.png')}")
  values = only(report, 'label_values')
  assert '7: 4 px, 128: 1 px' in values.message
  assert 'classes.txt' in values.fix
  mismatch = only(report, 'size_mismatch')
  assert '24x20 (WxH)' in mismatch.message and '30x20' in mismatch.message
  assert 'Image.NEAREST' in mismatch.fix
  assert 'no_label.jpg has no label' in only(report, 'missing_label').message
  missing = {p.split: p for p in report.problems_of('missing_class')}
  assert sorted(missing) == ['train', 'val']
  assert missing['train'].message.startswith(
      "classes that never occur in 'train' (1 of 3;")
  assert "2 'tree'" in missing['train'].message  # Only in val.
  assert "1 'road'" in missing['val'].message  # val_02 is all ignore.
  assert 'never predicts them' in missing['train'].message
  assert 'left out of the mean IoU' in missing['val'].message
  assert all(p.severity == check_report.WARNING for p in missing.values())


def test_summary_counts_sizes_and_histogram(broken):
  _, report = broken
  train, val, test = (report.splits[s] for s in ('train', 'val', 'test'))
  assert (train.num_images, train.num_read) == (7, 3)  # good_01/02, bad_ids.
  assert (val.num_images, val.num_read, test.num_images) == (2, 2, 0)
  # Every decodable image's size counts: 20x20 .. 40x60.
  assert train.min_size == (20, 20) and train.max_size == (40, 60)
  expected = np.zeros(256, np.int64)
  for ids in (label_ids(40, 60), label_ids(40, 60)):
    expected += np.bincount(ids.ravel(), minlength=256)
  bad = label_ids(20, 20)
  bad[5, 5:9], bad[6, 5] = 7, 128
  expected += np.bincount(bad.ravel(), minlength=256)
  np.testing.assert_array_equal(train.class_pixels, expected)
  assert train.class_images[255] == 3 and train.class_images[7] == 1
  assert val.class_pixels[255] == 50 + 40 * 50  # Ignore is counted too.


def test_small_images_are_a_note_not_a_problem(broken):
  _, report = broken
  assert any('smaller than the 33x33 training crop' in n and 'fine' in n
             for n in report.notes)
  assert not report.problems_of('eval_too_large')


def test_format_names_every_file_and_the_verdict(broken):
  _, report = broken
  text = report.format()
  for name in ('images/train/broken.jpg', 'labels/train/colour.png',
               'labels/train/bad_ids.png', 'labels/train/wrong_size.png',
               'labels/train/no_label.png', 'images/test',
               'labels/val/val_02.png'):
    assert name in text, name
  assert 'Problems: 6 errors' in text
  assert text.rstrip().endswith('NOT OK: fix the 6 errors above before training.')
  assert "2 'tree'" in text and '255 (ignore)' in text


def test_max_problems_lists_fewer_but_counts_all(broken):
  root, _ = broken
  report = check.check_dataset(custom_dataset_config(root), max_problems=2)
  assert len(report.problems) == 2 and report.num_errors == 6
  assert '... and' in report.format()


def test_convert_colour_label_gives_the_class_ids(tmp_path):
  ids = label_ids(12, 16, object_id=15)
  path = os.fspath(tmp_path / 'mask.png')
  write_image(path, voc_colour_mask(ids))
  colour_labels.convert_colour_label(path, 'pascal')
  with Image.open(path) as image:
    assert image.mode == 'L'
    np.testing.assert_array_equal(np.asarray(image), ids)
  with pytest.raises(ValueError, match=r'\(1, 2, 3\) are not in the'):
    colour_labels.colour_mask_to_ids(np.full((2, 2, 3), (1, 2, 3), np.uint8), 'pascal')


def write_clean_folder(root, label_for=lambda i: label_ids(24, 32, 1 + i % 2)):
  root = os.fspath(root)
  for split, count in (('train', 4), ('val', 2)):
    for i in range(count):
      write_image(os.path.join(root, 'images', split, f'{split}_{i}.png'),
                  image_pixels(i, 24, 32))
      write_label(os.path.join(root, 'labels', split, f'{split}_{i}.png'),
                  label_for(i))
  return root


def test_clean_folder_is_ok(tmp_path):
  root = write_clean_folder(tmp_path)
  report = check.check_dataset(custom_dataset_config(root), num_classes=3)
  assert report.ok and not report.problems, report.format()
  assert report.classes_from.startswith('1 + the largest id')
  assert report.format().rstrip().endswith('OK: no errors.')


def test_white_on_black_masks_are_the_predicts_only_background_trap(tmp_path):
  # Objects drawn as 255 on 0: with 255 the ignore label, nothing is an object.
  def mask(i):
    ids = np.zeros((24, 32), np.uint8)
    ids[5:15, 5 + i:20] = 255
    return ids
  root = write_clean_folder(tmp_path, label_for=mask)
  report = check.check_dataset(custom_dataset_config(root))
  problem = [p for p in report.problems_of('only_background')
             if p.split == 'train'][0]
  assert problem.severity == check_report.ERROR
  assert 'predicts only background' in problem.message
  assert 'ids[ids == 255] = 1' in problem.fix


def test_grey_stored_as_rgb_and_eval_images_too_large(tmp_path):
  root = write_clean_folder(tmp_path)
  grey = np.repeat(label_ids(24, 32)[..., None], 3, axis=2)
  write_image(os.path.join(root, 'labels', 'train', 'train_0.png'), grey)
  report = check.check_dataset(custom_dataset_config(root),
                               eval_crop_size=(17, 17))
  colour = only(report, 'colour_label')
  assert 'channels are all equal' in colour.message
  assert 'convert("L")' in colour.fix
  too_large = only(report, 'eval_too_large')
  assert 'val_0.png' in too_large.message
  assert '--config.eval_crop_size="(33, 33)"' in too_large.fix


def test_eval_images_larger_than_the_crop_are_an_error_only_without_sliding(
    tmp_path, capsys):
  root = write_clean_folder(tmp_path)  # 24x32 images.
  config = custom_config.get_config()  # Slides windows of the training crop.
  config.dataset.data_dir = root
  config.model.num_classes = 3
  config.train_crop_size = config.eval_crop_size = (17, 17)
  assert check.run_check_data(config) == 0
  assert 'eval_crop_size' not in capsys.readouterr().out
  config.eval_mode = 'whole'
  assert check.run_check_data(config) == 1
  assert 'larger than eval_crop_size (17, 17)' in capsys.readouterr().out


def test_num_classes_is_taken_from_the_data_or_checked(tmp_path, capsys,
                                                       caplog):
  root = write_clean_folder(tmp_path)
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('\n'.join(CLASSES) + '\n')
  config = custom_config.get_config()
  config.dataset.data_dir = root
  config.lock()  # As main.py's flags give it.
  assert config.model.num_classes is None
  assert check.run_check_data(config) == 0
  out = capsys.readouterr().out
  assert "Split 'train': 4 images" in out and 'OK: no errors' in out
  assert 'num_classes is not set: training takes 3 from the data' in out

  caplog.set_level('INFO')
  info = datasets.resolve_num_classes(config)
  assert config.model.num_classes == 3 and info.class_names == CLASSES
  assert (f'num_classes was not set: using 3, since {root}/classes.txt lists 3 '
          'class names') in caplog.text
  assert datasets.check_num_classes(config) == info

  config.model.num_classes = 5
  message = (f'config.model.num_classes is 5, but {root}/classes.txt lists 3 '
             'class names. Pass --config.model.num_classes=3, or leave it '
             'unset to take it from the data.')
  with pytest.raises(ValueError) as error:
    datasets.resolve_num_classes(config)
  assert str(error.value) == message
  assert check.run_check_data(config) == 1
  assert message in capsys.readouterr().out


def test_num_classes_without_the_data_folder(tmp_path):
  # Prediction and export may run where the custom data are not.
  config = custom_config.get_config()
  config.dataset.data_dir = os.fspath(tmp_path / 'not_here')
  with pytest.raises(ValueError, match=r'num_classes is not set and cannot be '
                     r'counted .*not_here/images does not exist\): pass '
                     r'--config\.model\.num_classes=N'):
    datasets.resolve_num_classes(config)
  config.model.num_classes = 4
  assert datasets.resolve_num_classes(config) is None
  assert config.model.num_classes == 4
  # Training needs the data itself.
  with pytest.raises(FileNotFoundError, match='not_here/images does not exist'):
    datasets.check_num_classes(config)


def test_a_stray_id_is_traced_to_its_mask(tmp_path):
  def label(i):
    ids = label_ids(24, 32, 1)
    if i == 2:
      ids[3, 4:6] = 9  # One slip of the brush.
    return ids
  root = write_clean_folder(tmp_path, label_for=label)
  report = check.check_dataset(custom_dataset_config(root))
  assert report.ok and report.num_classes == 10
  stray = only(report, 'stray_class_id')
  assert os.path.relpath(stray.path, root) == 'labels/train/train_2.png'
  assert ('class id 9 makes num_classes 10 (there is no classes.txt), yet ids '
          '[2, 3, 4, 5, 6, 7, 8] never occur; id 9 is only in 1 label: '
          'train_2.png.') == stray.message
  assert 'labels/train/train_2.png' in report.format()

  report = check.check_dataset(custom_dataset_config(root), num_classes=2)
  mismatch = only(report, 'num_classes')
  assert mismatch.message == (
      f'config.model.num_classes is 2, but the largest class id in {root}/'
      'labels/train is 9 (there is no classes.txt), in train_2.png. Pass '
      '--config.model.num_classes=10, or leave it unset to take it from the '
      'data.')
  config = custom_config.get_config()
  config.dataset.data_dir = root
  config.model.num_classes = 2
  with pytest.raises(ValueError) as error:
    datasets.resolve_num_classes(config)
  assert str(error.value) == mismatch.message


def test_prepared_tfds_dataset_is_scanned(tmp_path):
  data_ade20k_test.write_ade20k_zip(tmp_path / 'manual')
  config = defaults.get_config().dataset
  config.name = 'ade20k'
  config.ignore_label = 0
  config.train_split = 'train'
  config.data_dir = os.fspath(tmp_path / 'data')
  config.manual_dir = os.fspath(tmp_path / 'manual')
  report = check.check_dataset(config, num_classes=151)
  assert report.ok, report.format()
  assert {s: report.splits[s].num_read for s in report.splits} == {
      'train': 3, 'validation': 2}
  expected = np.zeros(256, np.int64)
  for i in range(3):
    expected += np.bincount(data_ade20k_test.annotation(i).ravel(),
                            minlength=256)
  np.testing.assert_array_equal(report.splits['train'].class_pixels, expected)
  # Class 0 is the ignore label here, so it is never "missing".
  missing = report.problems_of('missing_class')[0]
  assert '0 (ignore)' not in missing.message
  assert '(146 of 151;' in missing.message
  assert "2 'building'" in missing.message  # Not in the mini data.
  assert "1 'wall'" not in missing.message
  assert 'classes.txt' not in missing.fix


def test_missing_label_folder_jpeg_labels_and_missing_splits(tmp_path):
  root = write_clean_folder(tmp_path)
  os.rename(os.path.join(root, 'labels', 'val'),
            os.path.join(root, 'labels', 'old_val'))
  jpeg_label = os.path.join(root, 'labels', 'train', 'train_1')
  os.rename(jpeg_label + '.png', jpeg_label + '.jpg')
  report = check.check_dataset(custom_dataset_config(root),
                               splits=['train', 'val', 'holdout'])
  by_path = {os.path.relpath(p.path, root): p for p in report.problems}
  assert set(by_path) == {'labels/train/train_1.png', 'labels/val',
                          'images/holdout'}
  assert 'found train_1.jpg instead' in by_path['labels/train/train_1.png'].fix
  assert 'none of the 2 images' in by_path['labels/val'].message
  assert "['train', 'val']" in by_path['images/holdout'].message
  assert report.num_errors == 3
  assert 'NOT OK: fix the 3 errors above' in report.format()

  report = check.check_dataset(custom_dataset_config(tmp_path / 'nowhere'))
  (problem,) = report.problems
  assert problem.kind == 'layout' and 'nowhere/images does not exist' in (
      problem.message)
  assert 'NOT OK: fix the 1 error above' in report.format()


def test_readme_command_passes_a_clean_folder_without_a_class_count(tmp_path):
  root = write_clean_folder(tmp_path / 'data')
  result = subprocess.run(
      [sys.executable, 'main.py', '--config=configs/custom.py',
       f'--config.dataset.data_dir={root}', '--mode=check_data'],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert result.returncode == 0, result.stdout + result.stderr[-3000:]
  assert 'OK: no errors.' in result.stdout
  assert 'training takes 3 from the data' in result.stdout


def test_fix_commands_quote_file_names_for_the_shell(tmp_path):
  root = write_clean_folder(tmp_path / 'data')
  ids = label_ids(24, 32, object_id=15)
  name = 'c$(touch PWNED) \'x\'.png'
  write_image(os.path.join(root, 'images', 'train', name), image_pixels(0, 24, 32))
  write_image(os.path.join(root, 'labels', 'train', name), voc_colour_mask(ids))
  colour = only(check.check_dataset(custom_dataset_config(root)), 'colour_label')
  command = colour.fix.split('one-channel PNG): ', 1)[1]
  path = os.environ.get('PATH', '')
  subprocess.run(['bash', '-c', command], cwd=tmp_path, check=True,
                 env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2',
                          PATH=os.path.dirname(sys.executable) + ':' + path))
  assert not os.path.exists(tmp_path / 'PWNED')
  with Image.open(os.path.join(root, 'labels', 'train', name)) as label:
    np.testing.assert_array_equal(np.asarray(label), ids)
