"""The dataset registry: names in `config.dataset.name` -> data and facts.

Every dataset comes out in one form, `{'image': uint8 [H, W, 3], 'label':
uint8 [H, W, 1], 'name': tf.string}`, restricted to this host's shard.

  pascal_voc      PASCAL VOC 2012 + SBD train_aug (TFDS builder in voc.py)
  cityscapes      TFDS cityscapes/semantic_segmentation, labels as train ids
  ade20k          ADE20K SceneParsing, 151 classes, 0 ignored (ade20k.py)
  synthetic       the generated shapes task; 'synthetic/tiny' for smoke tests
  custom          a folder of images and id PNGs (`data_dir` is the folder)

TFDS-backed datasets are prepared into `data_dir` on first use (from
`manual_dir`, or downloaded where that is possible). Preparing from several
hosts at once into one shared `data_dir` races: run `prepare` once first.
"""

import dataclasses
import os
from typing import Callable, Dict, List, Optional, Tuple

from absl import logging
import jax
from jax.experimental import multihost_utils
import tensorflow as tf
import tensorflow_datasets as tfds

from deeplab_jax import image_files
from deeplab_jax.data import cityscapes
from deeplab_jax.data import custom


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the model, loss, metrics and visualisation need to know."""
  name: str
  num_classes: int
  ignore_label: int
  class_names: Tuple[str, ...]
  colormap: str  # 'pascal' | 'cityscapes' | 'ade20k'
  splits: Dict[str, Optional[int]]  # Split name -> size (None: not known yet).
  # Where num_classes comes from, as a clause: 'DIR/classes.txt lists 5 class
  # names', 'pascal_voc has 21 classes', ...
  classes_from: str = ''


@dataclasses.dataclass(frozen=True)
class _TfdsEntry:
  tfds_name: str
  class_names: Tuple[str, ...]
  colormap: str
  known_split_sizes: Dict[str, int]
  to_common_example: Callable[[dict], dict]
  ignore_label: int = 255
  # (height, width) no image of the dataset exceeds; None where they vary freely.
  largest_image: Optional[Tuple[int, int]] = None


def _identity_example(example):
  return {'image': example['image'], 'label': example['label'],
          'name': example['name']}


def _pascal_voc_entry(variant):
  if variant:
    raise ValueError(f'pascal_voc has no variant {variant!r}.')
  from deeplab_jax.data import voc  # pylint: disable=g-import-not-at-top
  return _TfdsEntry('pascal_voc_segmentation', voc.CLASS_NAMES, 'pascal',
                    dict(voc.SPLIT_SIZES), _identity_example,
                    largest_image=(500, 500))


def _cityscapes_entry(variant):
  if variant:
    raise ValueError(f'cityscapes has no variant {variant!r}.')
  return _TfdsEntry(cityscapes.TFDS_NAME, cityscapes.TRAIN_CLASS_NAMES,
                    'cityscapes', dict(cityscapes.SPLIT_SIZES),
                    cityscapes.to_common_example, largest_image=(1024, 2048))


def _ade20k_entry(variant):
  if variant:
    raise ValueError(f'ade20k has no variant {variant!r}.')
  # Imported here: the module registers its TFDS builder on import.
  from deeplab_jax.data import ade20k  # pylint: disable=g-import-not-at-top
  return _TfdsEntry(ade20k.TFDS_NAME, ade20k.CLASS_NAMES, 'ade20k',
                    dict(ade20k.SPLIT_SIZES), _identity_example,
                    ade20k.IGNORE_LABEL)


def _synthetic_entry(variant):
  # Imported here: the module registers its TFDS builder on import.
  from deeplab_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  variant = variant or 'default'
  configs = {c.name: c for c in synthetic.DeeplabSynthetic.BUILDER_CONFIGS}
  if variant not in configs:
    raise ValueError(f'synthetic has no variant {variant!r}; '
                     f'expected one of {sorted(configs)}.')
  config = configs[variant]
  sizes = {'train': config.num_train, 'validation': config.num_validation}
  return _TfdsEntry(f'deeplab_synthetic/{variant}', synthetic.CLASS_NAMES,
                    'pascal', sizes, _identity_example,
                    synthetic.IGNORE_LABEL,
                    largest_image=(config.max_size, config.max_size))


_TFDS_ENTRIES = {
    'pascal_voc': _pascal_voc_entry,
    'cityscapes': _cityscapes_entry,
    'ade20k': _ade20k_entry,
    'synthetic': _synthetic_entry,
}
CUSTOM = 'custom'


def dataset_names() -> Tuple[str, ...]:
  """The names `config.dataset.name` accepts (synthetic also as 'synthetic/tiny')."""
  return tuple(sorted([*_TFDS_ENTRIES, CUSTOM]))


def _parse_name(dataset_config):
  base, _, variant = str(dataset_config.name).partition('/')
  if base not in _TFDS_ENTRIES and base != CUSTOM:
    raise ValueError(f'Unknown config.dataset.name {dataset_config.name!r}; '
                     f'expected one of {list(dataset_names())}.')
  return base, variant


def _expand(path):
  return None if path is None else os.path.expanduser(os.fspath(path))


def _tfds_entry(dataset_config):
  base, variant = _parse_name(dataset_config)
  entry = _TFDS_ENTRIES[base](variant)
  ignore_label = dataset_config.get('ignore_label', entry.ignore_label)
  if ignore_label != entry.ignore_label:
    raise ValueError(
        f'{dataset_config.name} marks void pixels with {entry.ignore_label}, '
        f'but config.dataset.ignore_label is {ignore_label}.')
  return entry


def _builder(dataset_config, entry):
  return tfds.builder(entry.tfds_name,
                      data_dir=_expand(dataset_config.get('data_dir')))


def _custom_root(dataset_config):
  root = _expand(dataset_config.get('data_dir'))
  if not root:
    raise ValueError('config.dataset.data_dir must be the folder of a custom '
                     'dataset (with images/ and labels/ inside).')
  return root


def _custom_ignore_label(dataset_config):
  ignore_label = int(dataset_config.get('ignore_label', 255))
  if not 0 <= ignore_label <= 255:
    raise ValueError(f'config.dataset.ignore_label={ignore_label} does not '
                     'fit uint8 labels.')
  return ignore_label


def inferred_classes_from(labels_dir: str,
                          inferred: custom.InferredClasses) -> str:
  """Where an inferred class count comes from, naming the labels that set it."""
  files = [os.path.basename(f) for f in inferred.largest_id_files]
  shown = ', '.join(files[:3]) + (f' and {len(files) - 3} more'
                                  if len(files) > 3 else '')
  where = f', in {shown}' if files else ''
  return (f'the largest class id in {labels_dir} is {inferred.num_classes - 1} '
          f'(there is no {custom.CLASSES_FILE}){where}')


def _custom_info(dataset_config):
  root = _custom_root(dataset_config)
  ignore_label = _custom_ignore_label(dataset_config)
  class_names = custom.read_class_names(root)
  classes_file = os.path.join(root, custom.CLASSES_FILE)
  if class_names is None:
    train_split = dataset_config.get('train_split', 'train')
    inferred = custom.infer_num_classes(root, train_split, ignore_label)
    class_names = tuple(f'class_{i}' for i in range(inferred.num_classes))
    labels_dir = os.path.join(root, 'labels',
                              custom.split_folder(root, train_split))
    classes_from = inferred_classes_from(labels_dir, inferred)
  elif ignore_label < len(class_names):
    raise ValueError(
        f'{classes_file} lists {len(class_names)} classes, so the ignore label '
        f'{ignore_label} would be a class id.')
  else:
    classes_from = f'{classes_file} lists {len(class_names)} class names'
  splits = {split: custom.count_images(root, split)
            for split in custom.split_names(root)}
  return DatasetInfo(name=CUSTOM, num_classes=len(class_names),
                     ignore_label=ignore_label, class_names=class_names,
                     colormap='pascal', splits=splits,
                     classes_from=classes_from)


def get_dataset_info(dataset_config) -> DatasetInfo:
  """Facts about `config.dataset`; split sizes are exact once prepared.

  For `custom` without classes.txt this reads every training label once per
  process (`custom.infer_num_classes` keeps the answer).
  """
  base, _ = _parse_name(dataset_config)
  if base == CUSTOM:
    return _custom_info(dataset_config)
  entry = _tfds_entry(dataset_config)
  splits = dict(entry.known_split_sizes)
  builder = _builder(dataset_config, entry)
  if builder.is_prepared():
    splits = {name: info.num_examples
              for name, info in builder.info.splits.items()}
  name = str(dataset_config.name)
  return DatasetInfo(name=name, num_classes=len(entry.class_names),
                     ignore_label=entry.ignore_label,
                     class_names=tuple(entry.class_names),
                     colormap=entry.colormap, splits=splits,
                     classes_from=f'{name} has {len(entry.class_names)} classes')


def output_facts(config, info: Optional[DatasetInfo] = None
                 ) -> Tuple[str, Optional[List[str]]]:
  """(colormap name, class names or None) for pictures, palettes and legends.

  From `info` when the caller has it (resolved once at startup), else from
  the registry. Never fails: prediction and export may run where the dataset
  is not (e.g. a custom folder on another machine); then the colormap is the
  registered dataset's ('pascal' for custom) and the names are None. Names
  that do not fit `config.model.num_classes` are None too.
  """
  if info is None:
    try:
      info = get_dataset_info(config.dataset)
    except Exception as error:  # pylint: disable=broad-except  (TFDS raises many types)
      logging.info('No dataset info for %s (%s): no class names, the colormap '
                   'by its name.', config.dataset.name, error)
  if info is not None:
    colormap, names = info.colormap, list(info.class_names)
  else:
    colormap, names = _registered_colormap(config.dataset), None
  if names is not None and len(names) != config.model.num_classes:
    names = None
  return colormap, names


def _registered_colormap(dataset_config) -> str:
  base, variant = str(dataset_config.name).partition('/')[::2]
  try:
    return _TFDS_ENTRIES[base](variant).colormap
  except (KeyError, ValueError):  # custom, or an unknown name or variant
    return 'pascal'


def largest_image_size(dataset_config, split: str) -> Optional[Tuple[int, int]]:
  """The (height, width) no image of `split` exceeds, without decoding any;
  None where the registry cannot tell (ADE20K's sizes vary freely)."""
  base, _ = _parse_name(dataset_config)
  if base != CUSTOM:
    return _tfds_entry(dataset_config).largest_image
  headers = [image_files.read_header(pair.image_path)  # Upright sizes, as they are read.
             for pair in custom.list_pairs(_custom_root(dataset_config), split)]
  return max(h.height for h in headers), max(h.width for h in headers)


def num_classes_mismatch_message(wanted, num_classes: int,
                                 classes_from: str) -> str:
  """Why `config.model.num_classes=wanted` is wrong for a dataset of `num_classes`."""
  return (f'config.model.num_classes is {wanted}, but {classes_from}. Pass '
          f'--config.model.num_classes={num_classes}, or leave it unset to '
          'take it from the data.')


def _custom_folder_missing(dataset_config) -> Optional[str]:
  """Why the custom dataset is not here to be read, or None if it is."""
  root = dataset_config.get('data_dir')
  if not root:
    return 'config.dataset.data_dir is not set'
  images = os.path.join(_expand(root), 'images')
  return None if os.path.isdir(images) else f'{images} does not exist'


def resolve_num_classes(config) -> Optional[DatasetInfo]:
  """Sets `config.model.num_classes` from the dataset when it is None.

  Call once at startup, before building a model. The count is the number of
  names in classes.txt, else 1 + the largest class id in the training labels
  (custom), else the registered dataset's class count; what was chosen and
  why is logged. A count that is set and disagrees with the dataset's raises
  a one-line ValueError saying which count to pass.

  Prediction and export may run where the custom folder is not: then a set
  count is trusted (returns None), and an unset one raises, asking for it.
  Returns the dataset's info otherwise.
  """
  wanted = config.model.get('num_classes')
  missing = (_custom_folder_missing(config.dataset)
             if _parse_name(config.dataset)[0] == CUSTOM else None)
  if missing:
    if wanted is not None:
      logging.info('config.model.num_classes=%d, not checked against the '
                   'dataset (%s).', wanted, missing)
      return None
    raise ValueError(
        'config.model.num_classes is not set and cannot be counted from the '
        f'custom dataset ({missing}): pass --config.model.num_classes=N, the '
        'number of classes the model was trained with, or '
        '--config.dataset.data_dir=DIR.')
  info = get_dataset_info(config.dataset)
  if wanted is None:
    config.model.num_classes = info.num_classes
    logging.info('config.model.num_classes was not set: using %d, since %s.',
                 info.num_classes, info.classes_from)
  elif wanted != info.num_classes:
    raise ValueError(num_classes_mismatch_message(wanted, info.num_classes,
                                                  info.classes_from))
  return info


def check_num_classes(config) -> DatasetInfo:
  """`resolve_num_classes` for code about to read the data (it must be here)."""
  return resolve_num_classes(config) or get_dataset_info(config.dataset)


def prepare(dataset_config):
  """Builds a TFDS dataset into `data_dir` if needed; returns its builder.

  Nothing to do for `custom`, which is read in place (returns None).
  """
  base, _ = _parse_name(dataset_config)
  if base == CUSTOM:
    return None
  builder = _builder(dataset_config, _tfds_entry(dataset_config))
  if not builder.is_prepared():
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=_expand(dataset_config.get('manual_dir'))))
  return builder


def _check_split(builder, split):
  try:
    builder.info.splits[split]  # Parses slices such as 'train[:10%]' too.
  except (KeyError, ValueError) as error:
    raise ValueError(
        f'{builder.name} has no split {split!r}; its splits are '
        f'{sorted(builder.info.splits)}.') from error


def num_examples(dataset_config, split: str) -> int:
  """The size of a whole split (all hosts together)."""
  base, _ = _parse_name(dataset_config)
  if base == CUSTOM:
    return len(custom.list_pairs(_custom_root(dataset_config), split))
  builder = prepare(dataset_config)
  _check_split(builder, split)
  return builder.info.splits[split].num_examples


def load_split(dataset_config, split: str, *, process_index: int = 0,
               process_count: int = 1,
               shuffle_files: bool = False) -> tf.data.Dataset:
  """This host's shard of `split`, as {'image', 'label', 'name'} examples.

  Shards are contiguous and differ in size by at most one example (as
  `tfds.even_splits`); evaluation must pad the shorter ones.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} is not in '
                     f'[0, process_count={process_count}).')
  base, _ = _parse_name(dataset_config)
  if base == CUSTOM:
    root = _custom_root(dataset_config)
    info = _custom_info(dataset_config)
    pairs = custom.shard(custom.list_pairs(root, split), process_index,
                         process_count)
    return custom.make_dataset(pairs, info.num_classes, info.ignore_label,
                               shuffle_files=shuffle_files)
  entry = _tfds_entry(dataset_config)
  builder = prepare(dataset_config)
  _check_split(builder, split)
  host_split = tfds.even_splits(split, n=process_count,
                                drop_remainder=False)[process_index]
  dataset = builder.as_dataset(split=host_split, shuffle_files=shuffle_files)
  return dataset.map(entry.to_common_example,
                     num_parallel_calls=tf.data.AUTOTUNE)


def load_source(dataset_config, split: str) -> tf.data.Dataset:
  """This process's shard of `split` (`load_split` for the running JAX processes).

  With several processes, process 0 prepares the dataset while the others
  wait: the hosts of a pod usually share one data_dir, and preparing it from
  all of them at once would write the same files concurrently. The others then
  find it prepared (or, with a data_dir local to each host, prepare their own).
  """
  if jax.process_count() > 1:
    if jax.process_index() == 0:
      prepare(dataset_config)
    multihost_utils.sync_global_devices(
        f'dataset prepared: {dataset_config.name}')
  return load_split(dataset_config, split, process_index=jax.process_index(),
                    process_count=jax.process_count())
