"""`--mode=check_data`: read a whole dataset once and report every problem.

Training stops at the first bad file; this scan goes on and lists them all,
each with the file it is in and how to fix it, together with what the data
look like: images per split, the range of image sizes and the class histogram
(pixels per class id, the ignore label included).

For `custom` it reads the user's folder itself, with the checks of custom.py
(every image fully decoded, every label read as class ids). For the TFDS
datasets it reads the prepared examples, preparing them first if needed.
Reading is check_scan.py; the rules over what was read are here; the report
and its text are check_report.py.

  report = check_dataset(config.dataset, num_classes=config.model.num_classes)
  print(report.format())
  # or, for main.py: sys.exit(run_check_data(config))
"""

import functools
import os
from typing import Optional, Sequence

from deeplab_jax.data import check_scan
from deeplab_jax.data import custom
from deeplab_jax.data import datasets
from deeplab_jax.data import preprocessing
from deeplab_jax.data.check_report import ERROR, WARNING, Problem, Report, plural

# Background pixels above this share of the labelled pixels of a training
# split make "predict background everywhere" a strong local optimum.
_BACKGROUND_DOMINANCE = 0.95
_MAX_LISTED = 8  # Values or files quoted in one message.


# --- Rules over what was read ------------------------------------------------


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
          ERROR, custom.CLASSES_FILE_PROBLEM, None, classes_file,
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
    seen = check_scan.scan_custom(report, dataset_config, splits, report.ignore_label)
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
    seen = check_scan.scan_tfds(report, dataset_config, splits)

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
      # Slide mode covers images of any size with windows of the crop.
      eval_crop_size=None if config.get('eval_mode') == 'slide' else config.get('eval_crop_size'))
  if num_classes is None and report.num_classes is not None:
    report.notes.append(
        f'config.model.num_classes is not set: training takes '
        f'{report.num_classes} from the data ({report.classes_from}).')
  print(report.format(), flush=True)
  return 0 if report.ok else 1
