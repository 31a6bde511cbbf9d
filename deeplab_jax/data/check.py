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
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from deeplab_jax import colormaps
from deeplab_jax import image_files
from deeplab_jax.data import custom
from deeplab_jax.data import datasets
from deeplab_jax.data import preprocessing

ERROR = 'error'
WARNING = 'warning'

# Background pixels above this share of the labelled pixels of a training
# split make "predict background everywhere" a strong local optimum.
_BACKGROUND_DOMINANCE = 0.95
# Palettes a colour label is matched against, in this order.
_KNOWN_PALETTES = ('pascal', 'cityscapes', 'ade20k')
_MAX_LISTED = 8  # Values, colours or files quoted in one message.


@dataclasses.dataclass(frozen=True)
class Problem:
  """One thing wrong with the data, where it is, and what to do about it."""
  severity: str  # ERROR: training would fail or learn nonsense. WARNING: suspicious.
  kind: str  # e.g. 'corrupt_image', 'colour_label', 'label_values'.
  split: Optional[str]  # None for problems of the whole dataset.
  path: Optional[str]  # The file or folder; None when there is no one file.
  message: str
  fix: str


@dataclasses.dataclass
class SplitSummary:
  """What was found in one split."""
  name: str
  num_images: int = 0  # Image files found (including bad ones).
  num_read: int = 0  # Examples whose image and label were both read.
  min_size: Optional[Tuple[int, int]] = None  # (smallest height, smallest width).
  max_size: Optional[Tuple[int, int]] = None  # (largest height, largest width).
  class_pixels: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(256, np.int64))  # Pixels per label value.
  class_images: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(256, np.int64))  # Labels holding each value.

  def add_size(self, height: int, width: int) -> None:
    if self.min_size is None:
      self.min_size = self.max_size = (height, width)
    self.min_size = (min(self.min_size[0], height), min(self.min_size[1], width))
    self.max_size = (max(self.max_size[0], height), max(self.max_size[1], width))


@dataclasses.dataclass
class Report:
  """The outcome of `check_dataset`: `ok` unless some problem is an error."""
  dataset: str
  source: str  # The folder (custom) or the TFDS data dir that was read.
  num_classes: Optional[int] = None
  ignore_label: Optional[int] = None
  class_names: Tuple[str, ...] = ()
  classes_from: str = ''  # Where num_classes came from.
  splits: Dict[str, SplitSummary] = dataclasses.field(default_factory=dict)
  problems: List[Problem] = dataclasses.field(default_factory=list)
  notes: List[str] = dataclasses.field(default_factory=list)
  # Files read with a conversion: 'rotated_images', 'rotated_labels',
  # '16_bit_images' -> their paths (reported as notes).
  converted: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
  num_errors: int = 0  # All errors found, listed or not.
  num_warnings: int = 0
  max_problems: Optional[int] = None

  @property
  def ok(self) -> bool:
    return self.num_errors == 0

  @property
  def num_left_off(self) -> int:
    return self.num_errors + self.num_warnings - len(self.problems)

  def add(self, problem: Problem) -> None:
    if problem.severity == ERROR:
      self.num_errors += 1
    else:
      self.num_warnings += 1
    if self.max_problems is None or len(self.problems) < self.max_problems:
      self.problems.append(problem)

  def problems_of(self, kind: str) -> List[Problem]:
    return [p for p in self.problems if p.kind == kind]

  def format(self) -> str:
    return _format_report(self)


# --- Colour labels -----------------------------------------------------------


def _palette_ids(name: str) -> Dict[int, int]:
  """Packed 0xRRGGBB colour -> class id for one of the known palettes."""
  table = colormaps.get_colormap(name).astype(np.int64)
  ids = {}
  if name == 'cityscapes':
    table = table[:19]
    ids[0] = 255  # Black is void in Cityscapes colour masks.
  for class_id, (r, g, b) in enumerate(table):
    ids.setdefault(int(r) << 16 | int(g) << 8 | int(b), class_id)
  return ids


def _packed_colours(rgb: np.ndarray) -> np.ndarray:
  rgb = rgb.astype(np.int64)
  return rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]


def _matching_palette(colours: np.ndarray) -> Optional[str]:
  for name in _KNOWN_PALETTES:
    ids = _palette_ids(name)
    if all(int(c) in ids for c in colours):
      return name
  return None


def colour_mask_to_ids(rgb: np.ndarray, colormap: str) -> np.ndarray:
  """Class ids uint8 [H, W] of an RGB colour mask drawn with a known palette.

  `colormap` is 'pascal' (VOC's colours; its border colour (224, 224, 192)
  becomes the ignore label 255), 'cityscapes' (train-id colours; black
  becomes 255) or 'ade20k'. Colours outside the palette are an error.
  """
  palette = _palette_ids(colormap)
  packed = _packed_colours(np.asarray(rgb)[..., :3])
  colours, inverse = np.unique(packed, return_inverse=True)
  unknown = [int(c) for c in colours if int(c) not in palette]
  if unknown:
    shown = ', '.join(str(_unpack(c)) for c in unknown[:_MAX_LISTED])
    raise ValueError(f'Colours {shown} are not in the {colormap!r} palette.')
  lookup = np.array([palette[int(c)] for c in colours], np.uint8)
  return lookup[inverse].reshape(packed.shape)


def convert_colour_label(path: str, colormap: str = 'pascal',
                         output_path: Optional[str] = None) -> str:
  """Rewrites a colour label PNG as a one-channel PNG of class ids.

  Writes to `output_path`, by default over `path` itself; returns the path
  written.
  """
  with Image.open(path) as image:
    rgb = np.asarray(image.convert('RGB'))
  try:
    ids = colour_mask_to_ids(rgb, colormap)
  except ValueError as error:
    raise ValueError(f'{path}: {error}') from error
  output_path = output_path or path
  Image.fromarray(ids, mode='L').save(output_path)
  return output_path


def _unpack(colour: int) -> Tuple[int, int, int]:
  return (colour >> 16) & 255, (colour >> 8) & 255, colour & 255


def _diagnose_colour_label(path: str, ignore_label: int) -> Tuple[str, str]:
  """(what the colour label holds, how to turn it into class ids)."""
  with Image.open(path) as image:
    mode = image.mode
    if mode == '1':
      return ('a 1-bit black/white image, not class ids',
              'save it as a one-channel PNG of class ids, e.g. background 0 and '
              f'object 1: Image.fromarray((np.asarray(Image.open(p)) > 0)'
              '.astype(np.uint8)).save(p)')
    rgb = np.asarray(image.convert('RGB'))
  packed = _packed_colours(rgb)
  colours, counts = np.unique(packed, return_counts=True)
  if (np.all(rgb[..., 0] == rgb[..., 1]) and
      np.all(rgb[..., 1] == rgb[..., 2])):
    values = sorted({int(c) & 255 for c in colours})
    trap = ''
    if ignore_label in values and len(values) <= 2:
      trap = (f' Note that {ignore_label} is the ignore label: if it marks your '
              f'objects, map it to a class id (ids[ids == {ignore_label}] = 1).')
    return (f'an image of mode {mode} whose channels are all equal (grey '
            f'values {values[:_MAX_LISTED]})',
            'keep one channel, so its values are the class ids: '
            f'Image.open(p).convert("L").save(p).{trap}')
  palette = _matching_palette(colours)
  order = np.argsort(-counts)[:_MAX_LISTED]
  shown = ', '.join(f'{_unpack(int(colours[i]))}: {int(counts[i])} px'
                    for i in order)
  if palette is not None:
    ids = _palette_ids(palette)
    class_ids = sorted({ids[int(c)] for c in colours})
    return (f'a colour mask (mode {mode}); its colours are the {palette} '
            f'palette\'s for class ids {class_ids[:_MAX_LISTED]}',
            'convert to class ids (rewrites the file as a one-channel PNG): '
            'python -c \'import sys; from deeplab_jax.data import check; '
            f'check.convert_colour_label(sys.argv[1], "{palette}")\' '
            f'{shlex.quote(path)}')
  return (f'a colour image (mode {mode}) with {len(colours)} colours ({shown}) '
          'that match no known palette',
          'map each colour to its class id and save one channel, e.g. '
          'ids = np.zeros(rgb.shape[:2], np.uint8); '
          'ids[(rgb == (R, G, B)).all(-1)] = 1; ...; '
          'Image.fromarray(ids).save(p).')


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
      what, fix = _diagnose_colour_label(pair.label_path, ignore_label)
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
          str(error).replace(f'Custom dataset: label {pair.label_path} ', ''),
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
  except FileNotFoundError as error:
    report.add(Problem(
        ERROR, 'layout', None, os.path.join(root, 'images'),
        str(error).replace('Custom dataset: ', ''),
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
    except FileNotFoundError:
      report.add(Problem(
          ERROR, 'missing_split', split, os.path.join(root, 'images', split),
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


def _class_label(report, class_id):
  if class_id == report.ignore_label:
    return f'{class_id} (ignore)'
  if report.num_classes is not None and class_id < report.num_classes:
    name = (report.class_names[class_id]
            if class_id < len(report.class_names) else f'class_{class_id}')
    return f'{class_id} {name!r}'
  return f'{class_id} (not a class)'


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
          f'{_plural(summary.num_read, "label")} is the ignore label {ignore} '
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
    shown = ', '.join(_class_label(report, c) for c in missing[:3 * _MAX_LISTED])
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
      shown = ', '.join(_shown_path(report, p) for p in paths[:3])
      report.notes.append(text.format(_plural(len(paths), noun))
                          + f' (e.g. {shown}).')


# --- Entry points ------------------------------------------------------------


def _custom_classes(report, seen, train_split) -> str:
  """Fills num_classes/class_names as the training code would find them.

  Returns where the count comes from, as `DatasetInfo.classes_from` says it.
  """
  root = report.source
  try:
    names = custom.read_class_names(root)
  except ValueError as error:
    report.add(Problem(ERROR, 'classes_file', None,
                       os.path.join(root, custom.CLASSES_FILE),
                       str(error).replace('Custom dataset: ', ''),
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
  present = {int(v) for s in basis for v in s.values if v != ignore}
  largest = max(present, default=0)
  report.num_classes = largest + 1
  report.class_names = tuple(f'class_{i}' for i in range(largest + 1))
  report.classes_from = (f'1 + the largest id in {train_split!r} labels; no '
                         f'{custom.CLASSES_FILE}')
  holders = [s.path for s in basis if largest in s.values]
  absent = [i for i in range(largest) if i not in present]
  if absent and holders:  # A stray id would set the class count.
    names = ', '.join(os.path.basename(p) for p in holders[:_MAX_LISTED])
    report.add(Problem(
        WARNING, 'stray_class_id', train_split, holders[0],
        f'class id {largest} makes num_classes {largest + 1} (there is no '
        f'{custom.CLASSES_FILE}), yet ids {absent[:3 * _MAX_LISTED]} never '
        f'occur; id {largest} is only in {_plural(len(holders), "label")}: '
        f'{names}{" ..." if len(holders) > _MAX_LISTED else ""}.',
        f'if {largest} is a mistake, map it to a class id or to the ignore '
        f'label {ignore} in those labels; if the classes are real, name them '
        f'in {custom.CLASSES_FILE}.'))
  labels_dir = os.path.join(root, 'labels', train_split)
  return datasets.inferred_classes_from(
      labels_dir, custom.InferredClasses(largest + 1, tuple(holders)))


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


# --- Text --------------------------------------------------------------------


def _shown_path(report, path):
  if path and report.source and os.path.isabs(path):
    relative = os.path.relpath(path, report.source)
    if not relative.startswith('..'):
      return relative
  return path


def _format_split(report, summary) -> List[str]:
  lines = [f'Split {summary.name!r}: {summary.num_images} images, '
           f'{summary.num_read} read with their labels']
  if summary.min_size is not None:
    lines.append(f'  image sizes (HxW): height {summary.min_size[0]}..'
                 f'{summary.max_size[0]}, width {summary.min_size[1]}..'
                 f'{summary.max_size[1]}')
  pixels = summary.class_pixels
  total = int(pixels.sum())
  if total:
    lines.append(f'  {"class":<28} {"pixels":>12} {"share":>7} {"labels":>7}')
    for value in np.flatnonzero(pixels):
      lines.append(f'  {_class_label(report, int(value)):<28} '
                   f'{int(pixels[value]):>12,} '
                   f'{100 * pixels[value] / total:>6.2f}% '
                   f'{int(summary.class_images[value]):>7}')
    if report.num_classes:
      present = sum(1 for c in range(report.num_classes)
                    if c != report.ignore_label and pixels[c])
      counted = report.num_classes - (report.ignore_label < report.num_classes)
      lines.append(f'  {present} of {counted} classes occur.')
  return lines


def _plural(count: int, word: str) -> str:
  return f'{count} {word}' + ('' if count == 1 else 's')


def _format_report(report: Report) -> str:
  lines = [f'Data check of {report.dataset!r}'
           + (f' ({report.source})' if report.source else '')]
  if report.num_classes is not None:
    lines.append(f'{report.num_classes} classes ({report.classes_from}), '
                 f'ignore label {report.ignore_label}')
  for summary in report.splits.values():
    lines.append('')
    lines.extend(_format_split(report, summary))
  lines.append('')
  lines.append(f'Problems: {_plural(report.num_errors, "error")}, '
               f'{_plural(report.num_warnings, "warning")}')
  for problem in report.problems:
    where = ' '.join(filter(None, [
        f'[{problem.split}]' if problem.split else None,
        _shown_path(report, problem.path)]))
    lines.append(f'  {problem.severity.upper():<7} {where}: {problem.message}')
    lines.append(f'          fix: {problem.fix}')
  if report.num_left_off:
    lines.append(f'  ... and {report.num_left_off} more not listed '
                 f'(max_problems={report.max_problems}).')
  if report.notes:
    lines.append('')
    lines.append('Notes:')
    lines.extend(f'  {note}' for note in report.notes)
  lines.append('')
  if report.ok:
    lines.append('OK: no errors' + (' (see the warnings above).'
                                    if report.num_warnings else '.'))
  else:
    lines.append(f'NOT OK: fix the {_plural(report.num_errors, "error")} above '
                 'before training.')
  return '\n'.join(lines)
