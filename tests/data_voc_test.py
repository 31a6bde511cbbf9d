"""PASCAL VOC 2012 + SBD builder, prepared from mini archives in the real layout."""

import io
import os
import tarfile

import numpy as np
from PIL import Image
import pytest
import scipy.io
import tensorflow_datasets as tfds

from deeplab_jax.data import archives
from deeplab_jax.data import voc

# Mini VOC: train a b c, val d e. SBD: train b d f g, val c h.
# train_aug = (b d f g | c h | a b c) - (d e) = a b c f g h.
VOC_TRAIN = ['2007_000001', '2007_000002', '2007_000003']
VOC_VAL = ['2007_000004', '2007_000005']
SBD_TRAIN = ['2007_000002', '2007_000004', '2008_000006', '2008_000007']
SBD_VAL = ['2007_000003', '2008_000008']
SBD_ONLY_IMAGE = '2008_000008'  # Not in VOC's JPEGImages: read from SBD img/.
ALL_IDS = sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL))


def pascal_palette():
  """The real PASCAL VOC palette (bit-interleaved index -> RGB)."""
  palette = np.zeros((256, 3), np.uint8)
  for index in range(256):
    value, r, g, b = index, 0, 0, 0
    for shift in range(7, -1, -1):
      r |= ((value >> 0) & 1) << shift
      g |= ((value >> 1) & 1) << shift
      b |= ((value >> 2) & 1) << shift
      value >>= 3
    palette[index] = (r, g, b)
  return palette


def image_size(index):
  return 10 + 2 * index, 14 + index  # (height, width), unique per image.


def image_colour(index):
  return (20 * index + 10, 200 - 15 * index, 60 + 10 * index)


def voc_label(index):
  """Class ids with a 255 void border, distinct per image."""
  height, width = image_size(index)
  label = np.full((height, width), 1 + index % 20, np.uint8)
  label[: height // 2] = 0
  label[:, 0] = 255
  return label


def sbd_label(index):
  """Different from the VOC label, so the test sees which one was used."""
  height, width = image_size(index)
  label = np.full((height, width), 20 - index % 20, np.uint8)
  label[:, : width // 3] = 0
  return label


def _jpeg_bytes(index):
  height, width = image_size(index)
  pixels = np.tile(np.array(image_colour(index), np.uint8), (height, width, 1))
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='JPEG', quality=95)
  return buffer.getvalue()


def _palette_png_bytes(label):
  image = Image.fromarray(label, mode='P')
  image.putpalette(pascal_palette().flatten().tolist())
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def _mat_bytes(label, tmp_dir):
  path = os.path.join(tmp_dir, 'tmp.mat')
  gtcls = {'Segmentation': label, 'Boundaries': np.zeros((20, 1), object),
           'CategoriesPresent': np.unique(label[label > 0]).astype(np.uint8)}
  scipy.io.savemat(path, {'GTcls': gtcls})
  with open(path, 'rb') as f:
    return f.read()


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _add_dir(tar, name):
  info = tarfile.TarInfo(name)
  info.type = tarfile.DIRTYPE
  info.mode = 0o755
  tar.addfile(info)


def _list(ids):
  return ''.join(i + '\n' for i in ids).encode()


def write_voc_archives(manual_dir):
  """Writes mini VOCtrainval_11-May-2012.tar and benchmark.tgz in real layout."""
  os.makedirs(manual_dir, exist_ok=True)
  index_of = {image_id: i for i, image_id in enumerate(ALL_IDS)}
  root = 'VOCdevkit/VOC2012/'
  with tarfile.open(os.path.join(manual_dir, voc.VOC_ARCHIVE), 'w') as tar:
    for folder in ('VOCdevkit', root, root + 'JPEGImages', root + 'ImageSets',
                   root + 'ImageSets/Segmentation', root + 'SegmentationClass',
                   root + 'SegmentationObject', root + 'Annotations'):
      _add_dir(tar, folder.rstrip('/'))
    for image_id in ALL_IDS:
      if image_id != SBD_ONLY_IMAGE:
        _add(tar, f'{root}JPEGImages/{image_id}.jpg',
             _jpeg_bytes(index_of[image_id]))
    for image_id in VOC_TRAIN + VOC_VAL:
      png = _palette_png_bytes(voc_label(index_of[image_id]))
      _add(tar, f'{root}SegmentationClass/{image_id}.png', png)
      _add(tar, f'{root}SegmentationObject/{image_id}.png', png)
      _add(tar, f'{root}Annotations/{image_id}.xml', b'<annotation/>')
    lists = root + 'ImageSets/Segmentation/'
    _add(tar, lists + 'train.txt', _list(VOC_TRAIN))
    _add(tar, lists + 'val.txt', _list(VOC_VAL))
    _add(tar, lists + 'trainval.txt', _list(VOC_TRAIN + VOC_VAL))

  root = 'benchmark_RELEASE/dataset/'
  with tarfile.open(os.path.join(manual_dir, voc.SBD_ARCHIVE), 'w:gz') as tar:
    for folder in ('benchmark_RELEASE', root, root + 'cls', root + 'img',
                   root + 'inst'):
      _add_dir(tar, folder.rstrip('/'))
    for image_id in sorted(set(SBD_TRAIN + SBD_VAL)):
      index = index_of[image_id]
      _add(tar, f'{root}img/{image_id}.jpg', _jpeg_bytes(index))
      _add(tar, f'{root}cls/{image_id}.mat',
           _mat_bytes(sbd_label(index), manual_dir))
    _add(tar, root + 'train.txt', _list(SBD_TRAIN))
    _add(tar, root + 'val.txt', _list(SBD_VAL))
  os.remove(os.path.join(manual_dir, 'tmp.mat'))


def expected_label(image_id):
  index = ALL_IDS.index(image_id)
  return voc_label(index) if image_id in VOC_TRAIN + VOC_VAL else sbd_label(index)


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('voc')
  write_voc_archives(tmp / 'manual')
  builder = voc.PascalVocSegmentation(data_dir=os.fspath(tmp / 'data'))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir=os.fspath(tmp / 'manual')))
  return builder


def _examples(builder, split):
  return {ex['name'].decode(): ex
          for ex in tfds.as_numpy(builder.as_dataset(split=split))}


def test_train_aug_ids_follow_the_original_set_logic():
  assert voc.train_aug_ids(SBD_TRAIN, SBD_VAL, VOC_TRAIN, VOC_VAL) == [
      '2007_000001', '2007_000002', '2007_000003', '2008_000006',
      '2008_000007', '2008_000008']


def test_split_counts(prepared):
  splits = prepared.info.splits
  assert {name: splits[name].num_examples for name in splits} == {
      'train': 3, 'validation': 2, 'trainval': 5, 'train_aug': 6}


def test_split_membership(prepared):
  assert sorted(_examples(prepared, 'train')) == VOC_TRAIN
  assert sorted(_examples(prepared, 'validation')) == VOC_VAL
  assert sorted(_examples(prepared, 'trainval')) == VOC_TRAIN + VOC_VAL
  train_aug = set(_examples(prepared, 'train_aug'))
  assert not train_aug & set(VOC_VAL)  # SBD train lists a VOC val image.
  assert train_aug == set(VOC_TRAIN + SBD_TRAIN + SBD_VAL) - set(VOC_VAL)


@pytest.mark.parametrize('split', ['train_aug', 'validation'])
def test_labels_are_class_ids_aligned_with_images(prepared, split):
  for name, example in _examples(prepared, split).items():
    index = ALL_IDS.index(name)
    image, label = example['image'], example['label']
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert label.dtype == np.uint8 and label.shape[2] == 1
    assert image.shape[:2] == label.shape[:2] == image_size(index), name
    # Solid colour per id: the image is the one named, not a neighbour's.
    np.testing.assert_allclose(image.reshape(-1, 3).mean(0),
                               image_colour(index), atol=3)
    # Palette indices (incl. 255 border) or the SBD map, never RGB colours;
    # VOC's own label wins where VOC has one.
    np.testing.assert_array_equal(label[..., 0], expected_label(name))


def test_void_border_is_kept(prepared):
  label = _examples(prepared, 'train')[VOC_TRAIN[0]]['label']
  assert (label[:, 0] == 255).all()
  assert set(np.unique(label)) == {0, 1, 255}


def test_read_index_png_refuses_rgb_labels(tmp_path):
  path = tmp_path / 'rgb.png'
  Image.new('RGB', (4, 3), (128, 0, 0)).save(path)
  with pytest.raises(ValueError, match='rgb.png.*mode RGB'):
    voc.read_index_png(path)


def test_read_sbd_mat_refuses_a_mat_without_gtcls(tmp_path):
  path = tmp_path / 'bad.mat'
  scipy.io.savemat(path, {'other': np.zeros((2, 2))})
  with pytest.raises(ValueError, match='bad.mat.*GTcls'):
    voc.read_sbd_mat(path)


def test_missing_archives_without_network_say_where_to_put_them(
    tmp_path, monkeypatch):
  # A closed local port stands in for "no network".
  monkeypatch.setattr(voc, 'VOC_URL', 'http://127.0.0.1:9/' + voc.VOC_ARCHIVE)
  (tmp_path / 'manual').mkdir()
  (tmp_path / 'manual' / 'unrelated.txt').write_text('x')
  builder = voc.PascalVocSegmentation(data_dir=os.fspath(tmp_path / 'data'))
  with pytest.raises(FileNotFoundError) as error:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.fspath(tmp_path / 'manual')))
  message = str(error.value)
  assert voc.VOC_ARCHIVE in message and voc.SBD_ARCHIVE in message
  assert os.fspath(tmp_path / 'manual') in message


def test_extracted_folders_in_the_manual_dir_are_used_in_place(tmp_path):
  archive_dir = tmp_path / 'archives'
  write_voc_archives(archive_dir)
  manual = tmp_path / 'manual'
  for name in (voc.VOC_ARCHIVE, voc.SBD_ARCHIVE):
    archives.safe_extract(archive_dir / name, manual)
  builder = voc.PascalVocSegmentation(data_dir=os.fspath(tmp_path / 'data'))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=os.fspath(manual)))
  assert builder.info.splits['train_aug'].num_examples == 6
  extracted = tmp_path / 'data' / 'downloads' / 'extracted'
  assert not (extracted / (voc.VOC_ARCHIVE + '.dir')).exists()
  assert not (extracted / (voc.SBD_ARCHIVE + '.dir')).exists()
  label = _examples(builder, 'validation')[VOC_VAL[0]]['label'][..., 0]
  np.testing.assert_array_equal(label, expected_label(VOC_VAL[0]))


def test_a_truncated_archive_is_named_by_main_py_in_one_line(tmp_path):
  """Issue 16: a cut-short VOC download ended in a traceback that named no file."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  manual = tmp_path / 'manual'
  write_voc_archives(manual)
  archive = manual / voc.VOC_ARCHIVE
  data = archive.read_bytes()
  archive.write_bytes(data[:len(data) // 2])
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
      [sys.executable, os.path.join(repo, 'main.py'),
       f'--config={os.path.join(repo, "configs", "voc_mnv2.py")}:tiny',
       f'--workdir={tmp_path / "workdir"}', f'--config.dataset.manual_dir={manual}',
       f'--config.dataset.data_dir={tmp_path / "data"}', '--config.dataset.train_split=train'],
      capture_output=True, text=True, timeout=600, cwd=repo,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', JAX_PLATFORMS='cpu'))
  assert result.returncode == 1, result.stderr[-3000:]
  assert 'Traceback' not in result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('main.py: error:')]
  assert len(errors) == 1, result.stderr[-3000:]
  assert f'{archive} is damaged or incomplete' in errors[0]
  assert 'download it again' in errors[0]
