"""`--mode=check_data`: read a whole dataset once and report every problem.

Training stops at the first bad file; this scan goes on and lists them all,
each with the file it is in and how to fix it, together with what the data
look like: images per split, the range of image sizes and the class histogram
(pixels per class id, the ignore label included).

For `custom` it reads the user's folder itself, with the checks of custom.py
(every image fully decoded, every label read as class ids). For the TFDS
datasets it reads the prepared examples, preparing them first if needed.

  report = check_dataset(config.dataset, num_classes=config.model.num_classes)
  print(report.format())
  # or, for main.py: sys.exit(run_check_data(config))
"""

import dataclasses
import functools
import os
from typing import Optional, Sequence

import numpy as np

from deeplab_jax import image_files
from deeplab_jax.data import colour_labels
from deeplab_jax.data import custom
from deeplab_jax.data import datasets
from deeplab_jax.data import preprocessing
from deeplab_jax.data.check_report import ERROR, WARNING, Problem, Report, SplitSummary, plural

# Background pixels above this share of the labelled pixels of a training
# split make "predict background everywhere" a strong local optimum.
_BACKGROUND_DOMINANCE = 0.95
_MAX_LISTED = 8  # Values or files quoted in one message.

# --- Scanning ----------------------------------------------------------------


@dataclasses.dataclass
class _Seen:
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
  seen_list.append(_Seen(split, path, height, width, values, counts[values]))


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


def _scan_custom(report, dataset_config, splits, ignore_label):
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


def _scan_tfds(report, dataset_config, splits):
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


# --- Analysis ----------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _resized_size(height, width, min_size, max_size, factor):
  size = preprocessing.resize_to_range_size(
      height, width, min_size=min_size, max_size=max_size, factor=factor)
  return int(size[0]), int(size[1])


def _model_size(dataset_config, height, width):
  """An image's size after the pipeline's optional resize_to_range."""
  min_size = dataset_config.get('min_resize_value')
  if min_size is None:
    return height, width
  return _resized_size(height, width, int(min_size),
                       dataset_config.get('max_resize_value'),
                       dataset_config.get('resize_factor'))


def _check_values(report, seen, is_custom):
  num_classes, ignore = report.num_classes, report.ignore_label
  for item in seen:
    try:
      custom.check_label_values(item.path, item.values, num_classes, ignore)
    except custom.DataProblem:
      bad = [(int(v), int(c)) for v, c in zip(item.values, item.counts)
             if v >= num_classes and v != ignore]
      shown = ', '.join(f'{v}: {c} px' for v, c in bad[:_MAX_LISTED])
      if is_custom:
        fix = (f'map them to class ids 0..{num_classes - 1} or to the ignore '
               f'label {ignore}; if they are real classes, name them in '
               f'{custom.CLASSES_FILE}.')
      else:
        fix = ('the prepared data do not match the dataset: delete the '
               'prepared dataset and prepare it again.')
      report.add(Problem(
          ERROR, 'label_values', item.split, item.path,
          f'has values that are neither a class id (0..{num_classes - 1}) nor '
          f'the ignore label {ignore}: {shown}.', fix))


def _has_no_labels(report, summary) -> bool:
  """Whether every pixel read of a split is the ignore label."""
  pixels = summary.class_pixels
  return bool(summary.num_read) and pixels.sum() == pixels[report.ignore_label]


def _check_ignore_and_background(report, seen, train_split):
  ignore = report.ignore_label
  background = 0 if ignore != 0 else None
  for split, summary in report.splits.items():
    items = [s for s in seen if s.split == split]
    if not items:
      continue
    if split != train_split and _has_no_labels(report, summary):
      report.notes.append(
          f'Split {split!r} has no labels: every pixel of its '
          f'{plural(summary.num_read, "label")} is the ignore label {ignore} '
          '(as in Cityscapes\' test split, whose labels are withheld). It can '
          'be predicted on, not trained or evaluated on.')
      continue
    pixels = summary.class_pixels
    labelled = int(pixels.sum() - pixels[ignore])
    has_objects = labelled > (pixels[background] if background is not None
                              else 0)
    if background is not None and not has_objects:
      trap = ''
      if pixels[ignore]:
        trap = (f' If your objects are marked {ignore} (a black/white mask), '
                f'note that {ignore} is the ignore label: map it to class 1 '
                f'(ids[ids == {ignore}] = 1) and use num_classes 2.')
      report.add(Problem(
          ERROR, 'only_background', split, None,
          f'no label of split {split!r} holds any class but background '
          f'(0) or ignore ({ignore}): a model trained on it predicts only '
          'background.',
          'labels must hold the class id of each object pixel (1, 2, ...); a '
          f'mask with values 0/1 looks black in a viewer, which is right.'
          + trap))
    for item in items:
      values = set(int(v) for v in item.values)
      if values == {ignore}:
        report.add(Problem(
            WARNING, 'all_ignore', split, item.path,
            f'every pixel is the ignore label {ignore}: the example adds '
            'nothing to training or evaluation.',
            f'label it, or remove it; if {ignore} marks objects, map it to a '
            'class id.'))
      elif (background is not None and has_objects
            and values <= {background, ignore}):
        report.add(Problem(
            WARNING, 'only_background', split, item.path,
            'holds only background (and ignore): fine for a few negative '
            'examples, but many of them teach the model to predict only '
            'background.',
            'check that its objects were labelled.'))
    if (background is not None and has_objects and labelled
        and pixels[background] / labelled >= _BACKGROUND_DOMINANCE):
      report.add(Problem(
          WARNING, 'background_dominates', split, None,
          f'background is {100 * pixels[background] / labelled:.1f}% of the '
          f'labelled pixels of {split!r}: predicting only background already '
          'scores high on the loss.',
          'crop around objects, add images with more object area, or mine hard '
          'pixels (--config.top_k_percent_pixels=0.25 and '
          '--config.hard_example_mining_step).'))


def _check_missing_classes(report, train_split, is_custom):
  for split, summary in report.splits.items():
    if not summary.num_read or (split != train_split and
                                _has_no_labels(report, summary)):
      continue
    missing = [c for c in range(report.num_classes)
               if c != report.ignore_label and summary.class_pixels[c] == 0]
    if not missing:
      continue
    shown = ', '.join(report.class_label(c) for c in missing[:3 * _MAX_LISTED])
    more = (f' and {len(missing) - 3 * _MAX_LISTED} more'
            if len(missing) > 3 * _MAX_LISTED else '')
    if split == train_split:
      effect = 'the model never sees them, so never predicts them'
      fix = ('add labelled examples of them, or drop them from '
             f'{custom.CLASSES_FILE} and renumber the ids.' if is_custom else
             'expected only of a partial copy: prepare the dataset from the '
             'complete official archives.')
    else:
      effect = 'they are left out of the mean IoU unless predicted'
      fix = 'nothing, if intended; else add examples of them to this split.'
    report.add(Problem(
        WARNING, 'missing_class', split, None,
        f'classes that never occur in {split!r} ({len(missing)} of '
        f'{report.num_classes}; {effect}): {shown}{more}.', fix))


def _check_crop_sizes(report, dataset_config, seen, train_split, eval_split,
                      train_crop_size, eval_crop_size):
  resize = dataset_config.get('min_resize_value') is not None
  after = ' after the min/max resize' if resize else ''
  if train_crop_size is not None:
    crop_h, crop_w = (int(s) for s in train_crop_size)
    small = [s for s in seen if s.split == train_split and any(
        a < b for a, b in zip(_model_size(dataset_config, s.height, s.width),
                              (crop_h, crop_w)))]
    if small:
      report.notes.append(
          f'{len(small)} of {report.splits[train_split].num_read} '
          f'{train_split!r} images are smaller than the {crop_h}x{crop_w} '
          f'training crop{after} on some side; they are padded (image with the '
          'mean, label with the ignore label). That is fine.')
  if eval_crop_size is not None and eval_split in report.splits:
    crop_h, crop_w = (int(s) for s in eval_crop_size)
    sizes = [(s, _model_size(dataset_config, s.height, s.width))
             for s in seen if s.split == eval_split]
    large = [(s, size) for s, size in sizes
             if size[0] > crop_h or size[1] > crop_w]
    if large:
      need_h = max(size[0] for _, size in large)
      need_w = max(size[1] for _, size in large)
      need_h, need_w = (-(-(max(n, c) - 1) // 16) * 16 + 1
                        for n, c in ((need_h, crop_h), (need_w, crop_w)))
      names = ', '.join(os.path.basename(s.path) for s, _ in large[:_MAX_LISTED])
      report.add(Problem(
          ERROR, 'eval_too_large', eval_split, None,
          f'{len(large)} evaluation images are larger{after} than '
          f'eval_crop_size ({crop_h}, {crop_w}), which evaluation refuses: '
          f'{names}{" ..." if len(large) > _MAX_LISTED else ""}.',
          f'--config.eval_crop_size="({need_h}, {need_w})", or set '
          '--config.dataset.min_resize_value/max_resize_value so images fit.'))


def _note_conversions(report):
  """Notes what reading applied (as training and prediction apply it)."""
  what = {
      'rotated_images': ('EXIF rotation applied to {} (read upright, as '
                         'viewers show them; labels must match that)', 'image'),
      'rotated_labels': ('EXIF rotation applied to {}, as to images', 'label'),
      '16_bit_images': ('16-bit values scaled by the bit depth to 0..255 in '
                        '{}', 'image'),
  }
  for key, (text, noun) in what.items():
    paths = report.converted.get(key)
    if paths:
      shown = ', '.join(report.shown_path(p) for p in paths[:3])
      report.notes.append(text.format(plural(len(paths), noun))
                          + f' (e.g. {shown}).')


# --- Entry points ------------------------------------------------------------


def _custom_classes(report, seen, train_split) -> str:
  """Fills num_classes/class_names as the training code would find them.

  Returns where the count comes from, as `DatasetInfo.classes_from` says it.
  """
  root = report.source
  try:
    names = custom.read_class_names(root)
  except custom.DataProblem as error:
    report.add(Problem(ERROR, error.kind, None, error.path, f'{error.path} {error.detail}',
                       'list one class name per line, at most 255 lines.'))
    names = None
  if names is not None:
    report.class_names = names
    report.num_classes = len(names)
    report.classes_from = custom.CLASSES_FILE
    classes_file = os.path.join(root, custom.CLASSES_FILE)
    if report.ignore_label < len(names):
      report.add(Problem(
          ERROR, 'classes_file', None, classes_file,
          f'lists {len(names)} classes, so the ignore label '
          f'{report.ignore_label} is a class id.',
          'use ids below the ignore label, or set --config.dataset.'
          'ignore_label above the last class id.'))
    return f'{classes_file} lists {len(names)} class names'
  ignore = report.ignore_label
  basis = [s for s in seen if s.split == train_split] or seen
  inferred = custom.classes_of_values(((s.path, s.values) for s in basis), ignore)
  largest, holders = inferred.num_classes - 1, list(inferred.largest_id_files)
  report.num_classes = inferred.num_classes
  report.class_names = tuple(f'class_{i}' for i in range(inferred.num_classes))
  report.classes_from = (f'1 + the largest id in {train_split!r} labels; no '
                         f'{custom.CLASSES_FILE}')
  present = {int(v) for s in basis for v in s.values if v != ignore}
  absent = [i for i in range(largest) if i not in present]
  if absent and holders:  # A stray id would set the class count.
    names = ', '.join(os.path.basename(p) for p in holders[:_MAX_LISTED])
    report.add(Problem(
        WARNING, 'stray_class_id', train_split, holders[0],
        f'class id {largest} makes num_classes {largest + 1} (there is no '
        f'{custom.CLASSES_FILE}), yet ids {absent[:3 * _MAX_LISTED]} never '
        f'occur; id {largest} is only in {plural(len(holders), "label")}: '
        f'{names}{" ..." if len(holders) > _MAX_LISTED else ""}.',
        f'if {largest} is a mistake, map it to a class id or to the ignore '
        f'label {ignore} in those labels; if the classes are real, name them '
        f'in {custom.CLASSES_FILE}.'))
  labels_dir = os.path.join(root, 'labels', train_split)
  return datasets.inferred_classes_from(labels_dir, inferred)


def check_dataset(dataset_config, splits: Optional[Sequence[str]] = None, *,
                  max_problems: Optional[int] = None,
                  num_classes: Optional[int] = None,
                  train_crop_size: Optional[Sequence[int]] = None,
                  eval_crop_size: Optional[Sequence[int]] = None) -> Report:
  """Reads every example of `splits` and reports all problems found.

  Args:
    dataset_config: `config.dataset`.
    splits: the splits to read; default: the train and eval splits (and, for
      `custom`, every other split folder as well).
    max_problems: list at most this many problems (all are still counted).
    num_classes: `config.model.num_classes`, checked against the dataset's.
    train_crop_size: to note images smaller than the training crop.
    eval_crop_size: to find evaluation images larger than it (an error).

  Returns:
    A `Report`; `report.ok` is False if any problem is an error.
  """
  name = str(dataset_config.name)
  is_custom = name.partition('/')[0] == datasets.CUSTOM
  report = Report(dataset=name, source='', max_problems=max_problems)
  train_split = dataset_config.get('train_split', 'train')
  eval_split = dataset_config.get('eval_split', 'validation')
  if is_custom:
    data_dir = dataset_config.get('data_dir')
    if not data_dir:
      report.add(Problem(ERROR, 'layout', None, None,
                         'config.dataset.data_dir is not set.',
                         'pass --config.dataset.data_dir=DIR, the folder with '
                         'images/ and labels/.'))
      return report
    report.source = os.path.expanduser(os.fspath(data_dir))
    report.ignore_label = int(dataset_config.get('ignore_label', 255))
    seen = _scan_custom(report, dataset_config, splits, report.ignore_label)
    if report.source and not report.splits and report.num_errors:
      return report
    train_split = _folder_or_same(report.source, train_split)
    eval_split = _folder_or_same(report.source, eval_split)
    classes_from = _custom_classes(report, seen, train_split)
  else:
    try:
      info = datasets.get_dataset_info(dataset_config)
      builder = datasets.prepare(dataset_config)
    except Exception as error:  # pylint: disable=broad-except
      report.add(Problem(ERROR, 'prepare', None, None,
                         f'{type(error).__name__}: {error}',
                         'see the message: usually the archives are missing '
                         'from --config.dataset.manual_dir.'))
      return report
    report.source = os.fspath(builder.data_dir)
    report.num_classes, report.ignore_label = info.num_classes, info.ignore_label
    report.class_names = info.class_names
    report.classes_from = f'the {name} class table'
    classes_from = info.classes_from
    seen = _scan_tfds(report, dataset_config, splits)

  if num_classes is not None and num_classes != report.num_classes:
    report.add(Problem(
        ERROR, 'num_classes', None, None,
        datasets.num_classes_mismatch_message(num_classes, report.num_classes,
                                              classes_from),
        'the model\'s logits must have one channel per class.'))
  _check_values(report, seen, is_custom)
  _check_ignore_and_background(report, seen, train_split)
  _check_missing_classes(report, train_split, is_custom)
  _check_crop_sizes(report, dataset_config, seen, train_split, eval_split,
                    train_crop_size, eval_crop_size)
  _note_conversions(report)
  # Errors first, in the order found; then warnings.
  report.problems.sort(key=lambda p: p.severity != ERROR)
  return report


def _folder_or_same(root, split):
  try:
    return custom.split_folder(root, split)
  except FileNotFoundError:
    return split


def run_check_data(config) -> int:
  """`--mode=check_data`: prints the report of `config`'s data; the exit code."""
  num_classes = config.model.get('num_classes')
  report = check_dataset(
      config.dataset, num_classes=num_classes,
      train_crop_size=config.get('train_crop_size'),
      eval_crop_size=config.get('eval_crop_size'))
  if num_classes is None and report.num_classes is not None:
    report.notes.append(
        f'config.model.num_classes is not set: training takes '
        f'{report.num_classes} from the data ({report.classes_from}).')
  print(report.format(), flush=True)
  return 0 if report.ok else 1
