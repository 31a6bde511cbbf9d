"""Reading a dataset for `--mode=check_data`: every file, and every problem met reading it.

`scan_custom` reads a custom folder with custom.py's own readers (every image
fully decoded, every label read as class ids) and `scan_tfds` the prepared
examples of a TFDS dataset. Each fills the report's split summaries and
reading problems and returns what the rules in check.py look at: one `Seen`
per example whose label was read.
"""

import dataclasses
import os

import numpy as np

from deeplab_jax import image_files
from deeplab_jax.data import colour_labels
from deeplab_jax.data import custom
from deeplab_jax.data import datasets
from deeplab_jax.data.check_report import ERROR, WARNING, Problem, SplitSummary


@dataclasses.dataclass
class Seen:
  """One example whose label was read: what the analysis needs of it."""
  split: str
  path: str  # The label file (custom) or the example name (TFDS).
  height: int
  width: int
  values: np.ndarray  # Label values present.
  counts: np.ndarray  # Pixels of each.


def _record_label(report, seen_list, split, path, height, width, label):
  counts = np.bincount(label.ravel(), minlength=256)
  summary = report.splits[split]
  summary.num_read += 1
  summary.class_pixels += counts[:256]
  summary.class_images += counts[:256] > 0
  values = np.flatnonzero(counts)
  seen_list.append(Seen(split, path, height, width, values, counts[values]))


def _missing_label_fix(image_path: str, label_path: str) -> str:
  stem = os.path.splitext(os.path.basename(label_path))[0]
  labels_dir = os.path.dirname(label_path)
  others = []
  if os.path.isdir(labels_dir):
    others = [f for f in os.listdir(labels_dir)
              if os.path.splitext(f)[0] == stem]
  if others:
    return (f'found {others[0]} instead: labels must be .png (lossy JPEG '
            'changes the class ids at object edges); re-export it as PNG.')
  return (f'add {os.path.basename(label_path)} to {labels_dir}, or remove '
          f'{os.path.basename(image_path)} from the split.')


def _read_custom_image(report, split, path, fix):
  """The image as training reads it (None if it cannot be), noting conversions."""
  try:
    decoded = image_files.read_image(path)
  except image_files.UnreadableImageError as error:
    report.add(Problem(ERROR, custom.CORRUPT_IMAGE, split, path,
                       f'unreadable or corrupt image ({error.reason}).', fix))
    return None
  if decoded.orientation != 1:
    report.converted.setdefault('rotated_images', []).append(path)
  if image_files.is_16_bit(decoded.mode):
    report.converted.setdefault('16_bit_images', []).append(path)
  report.splits[split].add_size(*decoded.pixels.shape[:2])
  return decoded


def _scan_custom_pair(report, seen_list, split, pair, ignore_label):
  label = None
  image = _read_custom_image(
      report, split, pair.image_path,
      'replace it with an intact copy (re-export or re-download it), or '
      'delete it together with its label.')
  try:
    label = custom.read_label(pair.label_path)
    if image_files.read_header(pair.label_path).orientation != 1:
      report.converted.setdefault('rotated_labels', []).append(pair.label_path)
  except custom.DataProblem as error:
    if error.kind == custom.COLOUR_LABEL:
      what, fix = colour_labels.diagnose(pair.label_path, ignore_label)
      report.add(Problem(ERROR, error.kind, split, pair.label_path,
                         f'is {what}; labels must hold class ids.', fix))
    elif error.kind == custom.CORRUPT_LABEL:
      report.add(Problem(
          ERROR, error.kind, split, pair.label_path,
          f'unreadable or corrupt label ({error.__cause__ or error}).',
          're-export it from the annotation tool as a one-channel PNG.'))
    else:  # Values beyond uint8 (16-bit PNGs).
      report.add(Problem(
          ERROR, error.kind, split, pair.label_path,
          error.detail,
          'store class ids 0..254 (255 is the usual ignore label) as 8 bits.'))
  if image is None or label is None:
    return
  try:
    custom.check_pair_headers(pair)
  except custom.DataProblem as error:
    if error.kind != custom.SIZE_MISMATCH:  # Decoded above, so not expected.
      report.add(Problem(ERROR, error.kind, split, error.path, str(error),
                         're-export the file.'))
      return
    (ih, iw), (lh, lw) = image.pixels.shape[:2], label.shape[:2]
    hint = ''
    if (lh, lw) == (iw, ih):
      hint = (' The sizes are swapped: the image carries an EXIF rotation '
              '(applied, as viewers show it), so the label seems drawn on the '
              'unrotated pixels; rotate it to match.'
              if image.orientation != 1 else
              ' The sizes are swapped: is the label transposed?')
    report.add(Problem(
        ERROR, error.kind, split, pair.label_path,
        f'is {lw}x{lh} (WxH) but its image {os.path.basename(pair.image_path)}'
        f' is {iw}x{ih}.{hint}',
        f'the label must be exactly the image\'s size: re-export it at '
        f'{iw}x{ih}, or resize it with nearest-neighbour (never bilinear, '
        f'which invents ids): Image.open(p).resize(({iw}, {ih}), '
        'Image.NEAREST).save(p).'))
    return
  _record_label(report, seen_list, split, pair.label_path,
                image.pixels.shape[0], image.pixels.shape[1], label)


def scan_custom(report, dataset_config, splits, ignore_label):
  """Reads a custom folder; returns the examples read and the train split."""
  root = report.source
  seen = []
  try:
    folders = custom.split_names(root)
  except custom.MissingFolder as error:
    report.add(Problem(
        ERROR, error.kind, None, error.path, f'{error.path} {error.detail}',
        'point --config.dataset.data_dir at the folder that holds images/ '
        'and labels/.'))
    return seen
  wanted = list(splits) if splits is not None else [
      dataset_config.get('train_split', 'train'),
      dataset_config.get('eval_split', 'val')]
  resolved = []
  for split in wanted:
    try:
      folder = custom.split_folder(root, split)
    except custom.MissingFolder:
      report.add(Problem(
          ERROR, custom.MISSING_SPLIT, split, os.path.join(root, 'images', split),
          f'split folder does not exist; the splits there are {folders}.',
          f'create images/{split}/ and labels/{split}/, or set '
          '--config.dataset.train_split/eval_split to an existing split.'))
      continue
    if folder not in resolved:
      resolved.append(folder)
  if splits is None:  # Every other split folder too.
    resolved += [f for f in folders if f not in resolved]

  for split in resolved:
    report.splits[split] = SplitSummary(split)
    listing = custom.find_pairs(root, split)
    report.splits[split].num_images = (
        len(listing.pairs) + len(listing.missing_labels))
    if not listing.pairs and not listing.missing_labels:
      report.add(Problem(
          ERROR, 'empty_split', split, listing.images_dir,
          f'split {split!r} is empty: no '
          f'{"/".join(custom.IMAGE_EXTENSIONS)} images in it.',
          f'put the images of {split!r} there, or remove the empty folder.'))
      continue
    if listing.missing_labels and not os.path.isdir(listing.labels_dir):
      report.add(Problem(
          ERROR, 'missing_label', split, listing.labels_dir,
          f'folder does not exist, so none of the {len(listing.missing_labels)}'
          f' images of {split!r} has a label.',
          f'put the label PNGs of {split!r} in {listing.labels_dir}.'))
    else:
      for image_path, label_path in listing.missing_labels:
        report.add(Problem(
            ERROR, 'missing_label', split, label_path,
            f'missing: image {os.path.basename(image_path)} has no label.',
            _missing_label_fix(image_path, label_path)))
    for stem, paths in listing.duplicate_stems:
      report.add(Problem(
          ERROR, 'duplicate_stem', split, paths[0],
          f'{len(paths)} images share the stem {stem!r} '
          f'({", ".join(os.path.basename(p) for p in paths)}) and so one label.',
          'rename or remove all but one of them.'))
    for path in listing.orphan_labels:
      report.add(Problem(
          WARNING, 'orphan_label', split, path,
          'has no image of the same stem, so it is never used.',
          'add its image, or remove it.'))
    for pair in listing.pairs:
      _scan_custom_pair(report, seen, split, pair, ignore_label)
    # Only images with a label are read in full above.
    for image_path, _ in listing.missing_labels:
      _read_custom_image(report, split, image_path,
                         'replace it with an intact copy, or delete it.')
  return seen


def scan_tfds(report, dataset_config, splits):
  seen = []
  wanted = list(splits) if splits is not None else list(dict.fromkeys([
      dataset_config.get('train_split', 'train'),
      dataset_config.get('eval_split', 'validation')]))
  for split in wanted:
    try:
      dataset = datasets.load_split(dataset_config, split)
    except ValueError as error:
      report.add(Problem(ERROR, 'missing_split', split, None, str(error),
                         'set --config.dataset.train_split/eval_split to one '
                         'of the splits named.'))
      continue
    summary = report.splits[split] = SplitSummary(split)
    try:
      for example in dataset.as_numpy_iterator():
        name = example['name'].decode('utf-8', 'replace')
        image, label = example['image'], example['label']
        summary.num_images += 1
        summary.add_size(*image.shape[:2])
        if image.shape[:2] != label.shape[:2]:
          report.add(Problem(
              ERROR, 'size_mismatch', split, name,
              f'image is {image.shape[:2]} (HxW) but its label is '
              f'{label.shape[:2]}.',
              'the prepared data are damaged: delete the prepared dataset and '
              'prepare it again.'))
          continue
        _record_label(report, seen, split, name, image.shape[0],
                      image.shape[1], label)
    except Exception as error:  # pylint: disable=broad-except
      # A record that cannot be decoded ends the iteration of its split.
      report.add(Problem(
          ERROR, 'corrupt_record', split, None,
          f'reading stopped after {summary.num_images} examples: '
          f'{type(error).__name__}: {error}',
          'the prepared data are damaged: delete the prepared dataset and '
          'prepare it again.'))
    if summary.num_images == 0:
      report.add(Problem(ERROR, 'empty_split', split, None,
                         f'split {split!r} has no examples.',
                         'prepare the dataset again from complete archives.'))
  return seen
