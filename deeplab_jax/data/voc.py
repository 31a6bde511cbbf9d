"""PASCAL VOC 2012 semantic segmentation, with SBD's `train_aug`, as a TFDS builder.

Reads the official archives unchanged:
- `VOCtrainval_11-May-2012.tar`: `VOCdevkit/VOC2012/JPEGImages/<id>.jpg`,
  palette PNGs `SegmentationClass/<id>.png` (palette index = class id, 255 =
  void border) and the lists `ImageSets/Segmentation/{train,val,trainval}.txt`.
- SBD's `benchmark.tgz`: `benchmark_RELEASE/dataset/cls/<id>.mat` (a MATLAB
  struct `GTcls` whose field `Segmentation` is the HxW class map),
  `img/<id>.jpg` and the lists `train.txt`, `val.txt`.

`train_aug` is the original DeepLab's 10,582-image training set:
(SBD train | SBD val | VOC train) - VOC val, labelled by VOC's own PNG where
VOC has one and by SBD's class map otherwise.
"""

import os

import numpy as np
from PIL import Image
import scipy.io
import tensorflow_datasets as tfds

from deeplab_jax.data import tfds_sources

VOC_ARCHIVE = 'VOCtrainval_11-May-2012.tar'
SBD_ARCHIVE = 'benchmark.tgz'
VOC_URL = ('http://host.robots.ox.ac.uk/pascal/VOC/voc2012/'
           'VOCtrainval_11-May-2012.tar')
SBD_URL = ('http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/'
           'semantic_contours/benchmark.tgz')

CLASS_NAMES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
    'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
    'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
IGNORE_LABEL = 255
SPLIT_SIZES = {
    'train': 1464, 'validation': 1449, 'trainval': 2913, 'train_aug': 10582}

_VOC_ROOT = os.path.join('VOCdevkit', 'VOC2012')
_SBD_ROOT = os.path.join('benchmark_RELEASE', 'dataset')
# Our split name -> VOC's list file name.
_VOC_LISTS = {'train': 'train', 'validation': 'val', 'trainval': 'trainval'}

_MANUAL_INSTRUCTIONS = f"""\
Put these two files, unchanged, in the manual dir (`config.dataset.manual_dir`):
  {VOC_ARCHIVE}  from {VOC_URL}
  {SBD_ARCHIVE}  from {SBD_URL}
(or their extracted folders {_VOC_ROOT}/ and {_SBD_ROOT}/ there instead).
"""


def read_id_list(path) -> list:
  """Reads an image-id list file (one id per line, blank lines ignored)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Missing image list {path}.')
  with open(path) as f:
    return [line.strip() for line in f if line.strip()]


def read_index_png(path) -> np.ndarray:
  """A palette (or grey) PNG as its uint8 indices [H, W, 1], never as colours."""
  with Image.open(path) as image:
    if image.mode not in ('P', 'L'):
      raise ValueError(
          f'{path}: label PNG has mode {image.mode}; expected a palette (P) or '
          'single-channel (L) PNG whose values are class ids.')
    indices = np.asarray(image, dtype=np.uint8)
  return indices[..., np.newaxis]


def read_sbd_mat(path) -> np.ndarray:
  """SBD's `GTcls.Segmentation` class map as uint8 [H, W, 1]."""
  try:
    mat = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    segmentation = np.asarray(mat['GTcls'].Segmentation)
  except (KeyError, AttributeError, ValueError, OSError) as error:
    raise ValueError(
        f'{path}: not an SBD class file with a GTcls.Segmentation map '
        f'({error}).') from error
  if segmentation.ndim != 2:
    raise ValueError(f'{path}: GTcls.Segmentation has shape '
                     f'{segmentation.shape}; expected a 2-D class map.')
  return segmentation.astype(np.uint8)[..., np.newaxis]


def _image_size(path):
  with Image.open(path) as image:
    return image.height, image.width


def train_aug_ids(sbd_train, sbd_val, voc_train, voc_val) -> list:
  """The original's train_aug ids: (SBD train | SBD val | VOC train) - VOC val."""
  return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


class PascalVocSegmentation(tfds.core.GeneratorBasedBuilder):
  """PASCAL VOC 2012 segmentation: train, validation, trainval, train_aug."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'VOC 2012 segmentation plus SBD train_aug.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL_INSTRUCTIONS

  def _info(self):
    return self.dataset_info_from_configs(
        features=tfds_sources.segmentation_features(),
        homepage='http://host.robots.ox.ac.uk/pascal/VOC/voc2012/')

  def _split_generators(self, dl_manager):
    roots = {
        key: tfds_sources.archive_folder(dl_manager, 'PASCAL VOC', file_name, url,
                                         inner, _MANUAL_INSTRUCTIONS)
        for key, file_name, url, inner in (
            ('voc', VOC_ARCHIVE, VOC_URL, _VOC_ROOT),
            ('sbd', SBD_ARCHIVE, SBD_URL, _SBD_ROOT))}
    voc_lists = os.path.join(roots['voc'], 'ImageSets', 'Segmentation')
    ids = {split: read_id_list(os.path.join(voc_lists, list_name + '.txt'))
           for split, list_name in _VOC_LISTS.items()}
    ids['train_aug'] = train_aug_ids(
        read_id_list(os.path.join(roots['sbd'], 'train.txt')),
        read_id_list(os.path.join(roots['sbd'], 'val.txt')),
        ids['train'], ids['validation'])
    return {
        split: self._generate_examples(
            voc_root=roots['voc'], sbd_root=roots['sbd'], image_ids=split_ids)
        for split, split_ids in ids.items()
    }

  def _generate_examples(self, voc_root, sbd_root, image_ids):
    for image_id in image_ids:
      image_path = os.path.join(voc_root, 'JPEGImages', image_id + '.jpg')
      if not os.path.isfile(image_path):
        image_path = os.path.join(sbd_root, 'img', image_id + '.jpg')
      voc_label = os.path.join(voc_root, 'SegmentationClass', image_id + '.png')
      sbd_label = os.path.join(sbd_root, 'cls', image_id + '.mat')
      if os.path.isfile(voc_label):
        label_path, label = voc_label, read_index_png(voc_label)
      elif os.path.isfile(sbd_label):
        label_path, label = sbd_label, read_sbd_mat(sbd_label)
      else:
        raise FileNotFoundError(
            f'No label for image id {image_id}: neither {voc_label} nor '
            f'{sbd_label} exists.')
      if not os.path.isfile(image_path):
        raise FileNotFoundError(
            f'No image for id {image_id} in {voc_root}/JPEGImages or '
            f'{sbd_root}/img.')
      image_size = _image_size(image_path)
      if image_size != label.shape[:2]:
        raise ValueError(f'{image_path} is {image_size} (HxW) but its label '
                         f'{label_path} is {label.shape[:2]}.')
      yield image_id, {'image': image_path, 'label': label, 'name': image_id}
