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
from typing import Callable, Dict, Optional, Tuple

import tensorflow as tf
import tensorflow_datasets as tfds

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


def _custom_info(dataset_config):
  root = _custom_root(dataset_config)
  ignore_label = _custom_ignore_label(dataset_config)
  class_names = custom.read_class_names(root)
  if class_names is None:
    train_split = dataset_config.get('train_split', 'train')
    num_classes = custom.infer_num_classes(root, train_split, ignore_label)
    class_names = tuple(f'class_{i}' for i in range(num_classes))
  elif ignore_label < len(class_names):
    raise ValueError(
        f'{os.path.join(root, custom.CLASSES_FILE)} lists '
        f'{len(class_names)} classes, so the ignore label {ignore_label} would '
        'be a class id.')
  splits = {split: custom.count_images(root, split)
            for split in custom.split_names(root)}
  return DatasetInfo(name=CUSTOM, num_classes=len(class_names),
                     ignore_label=ignore_label, class_names=class_names,
                     colormap='pascal', splits=splits)


def get_dataset_info(dataset_config) -> DatasetInfo:
  """Facts about `config.dataset`; split sizes are exact once prepared."""
  base, _ = _parse_name(dataset_config)
  if base == CUSTOM:
    return _custom_info(dataset_config)
  entry = _tfds_entry(dataset_config)
  splits = dict(entry.known_split_sizes)
  builder = _builder(dataset_config, entry)
  if builder.is_prepared():
    splits = {name: info.num_examples
              for name, info in builder.info.splits.items()}
  return DatasetInfo(name=str(dataset_config.name),
                     num_classes=len(entry.class_names),
                     ignore_label=entry.ignore_label,
                     class_names=tuple(entry.class_names),
                     colormap=entry.colormap, splits=splits)


def largest_image_size(dataset_config, split: str) -> Optional[Tuple[int, int]]:
  """The (height, width) no image of `split` exceeds, without decoding any;
  None where the registry cannot tell (ADE20K's sizes vary freely)."""
  base, _ = _parse_name(dataset_config)
  if base != CUSTOM:
    return _tfds_entry(dataset_config).largest_image
  heights, widths = [0], [0]
  for pair in custom.list_pairs(_custom_root(dataset_config), split):
    width, height = custom.image_size(pair.image_path)
    heights.append(height)
    widths.append(width)
  return max(heights), max(widths)


def num_classes_mismatch_message(wanted, dataset_config,
                                 num_classes: int) -> str:
  """Why `config.model.num_classes=wanted` is wrong for a dataset of `num_classes`."""
  if _parse_name(dataset_config)[0] == CUSTOM:
    root = _custom_root(dataset_config)
    classes_file = os.path.join(root, custom.CLASSES_FILE)
    if os.path.isfile(classes_file):
      source = f'{classes_file} lists {num_classes} class names'
    else:
      source = (f'the labels in {os.path.join(root, "labels")} (there is no '
                f'{custom.CLASSES_FILE}) use class ids up to {num_classes - 1}')
    fix = f' (or correct {custom.CLASSES_FILE})'
  else:
    source = f'{dataset_config.name} has {num_classes} classes'
    fix = ''
  return (f'config.model.num_classes is {wanted}, but {source}. Pass '
          f'--config.model.num_classes={num_classes}{fix}.')


def check_num_classes(config) -> DatasetInfo:
  """Fails clearly unless `config.model.num_classes` equals the dataset's.

  Call at startup, before building the model: a mismatch would otherwise
  surface much later as a shape error in the logits or in the metrics.
  For `custom` the dataset's count is the number of names in classes.txt
  (or, without that file, 1 + the largest class id in the training labels).
  Returns the dataset's info.
  """
  info = get_dataset_info(config.dataset)
  wanted = config.model.get('num_classes')
  if wanted != info.num_classes:
    raise ValueError(num_classes_mismatch_message(wanted, config.dataset,
                                                  info.num_classes))
  return info


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
