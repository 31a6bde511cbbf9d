"""A user's own segmentation data, read in place from a folder.

Layout (nothing is copied or converted):

  DIR/images/<split>/<stem>.jpg|.jpeg|.png   the images
  DIR/labels/<split>/<stem>.png              class ids, one channel; 255 = ignore
  DIR/classes.txt                            optional: one class name per line

Label PNGs must hold class ids (mode L, P or 16-bit grey with ids < 256);
colour label images are refused rather than guessed at. Files are read by
`deeplab_jax.image_files`, as prediction reads them: upright (EXIF orientation
applied, to labels as to images) and images as 8-bit RGB. When a split is
opened, every pair's header is checked (label present, single channel, same
upright size as the image), so those mistakes fail at once; each file's pixels
are checked (decodable, ids < num_classes or the ignore label) as it is read.
`validate_split` checks every pixel of a split up front, stopping at the first
bad file; `deeplab_jax.data.check` runs the same checks over every file and
reports all problems at once (that is what `DataProblem.kind` is for).
"""

import functools
import os
from typing import Iterable, List, NamedTuple, Optional, Tuple

import numpy as np
import tensorflow as tf

from deeplab_jax import image_files

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
CLASSES_FILE = 'classes.txt'
# Split names the rest of the code uses -> folder names users tend to pick.
_SPLIT_ALIASES = {'validation': 'val', 'val': 'validation'}
_ID_LABEL_MODES = ('L', 'P', 'I;16', 'I;16B', 'I;16L', 'I')


# What a `DataProblem` is about (`check.py` attaches a fix to each).
LAYOUT = 'layout'
MISSING_SPLIT = 'missing_split'
CLASSES_FILE_PROBLEM = 'classes_file'
CORRUPT_IMAGE = 'corrupt_image'
CORRUPT_LABEL = 'corrupt_label'
COLOUR_LABEL = 'colour_label'
SIZE_MISMATCH = 'size_mismatch'
LABEL_VALUES = 'label_values'


class DataProblem(ValueError):
  """A bad file or folder of a custom dataset.

  `kind` says what is wrong, `path` where, and `detail` how, as words that
  follow the path ('has values up to 300; class ids must fit in 0..255.'):
  the data check quotes `detail` beside the file it names. The message, for
  training's one-line error, is 'Custom dataset: <what> <path> <detail>'.
  """

  def __init__(self, kind: str, path: str, detail: str, what: str = ''):
    super().__init__(' '.join(filter(None, ['Custom dataset:', what, path, detail])))
    self.kind = kind
    self.path = path
    self.detail = detail


class MissingFolder(DataProblem, FileNotFoundError):
  """A folder of the layout that is not there (also a FileNotFoundError)."""


class Pair(NamedTuple):
  name: str  # The file stem, shared by image and label.
  image_path: str
  label_path: str


def split_names(root: str) -> List[str]:
  """The split folders under DIR/images."""
  images_dir = os.path.join(root, 'images')
  if not os.path.isdir(images_dir):
    raise MissingFolder(LAYOUT, images_dir,
                        'does not exist; expected DIR/images/<split>/*.jpg|png and '
                        'DIR/labels/<split>/*.png.')
  return sorted(d for d in os.listdir(images_dir)
                if os.path.isdir(os.path.join(images_dir, d)))


def split_folder(root: str, split: str) -> str:
  """The folder name of `split`, accepting 'validation' for 'val' and back."""
  names = split_names(root)
  if split in names:
    return split
  if _SPLIT_ALIASES.get(split) in names:
    return _SPLIT_ALIASES[split]
  raise MissingFolder(MISSING_SPLIT, os.path.join(root, 'images', split),
                      f'(the splits there are {names}).',
                      what='no split folder')


def _is_image_file(file_name: str) -> bool:
  stem, extension = os.path.splitext(file_name)
  return extension.lower() in IMAGE_EXTENSIONS and not stem.startswith('.')


def count_images(root: str, split: str) -> int:
  """Images in a split folder (labels not looked at: cheap, never raises on them)."""
  images_dir = os.path.join(root, 'images', split_folder(root, split))
  return sum(_is_image_file(f) for f in os.listdir(images_dir))


class SplitListing(NamedTuple):
  """Everything found in one split folder, good and bad, without raising."""
  images_dir: str
  labels_dir: str
  pairs: List[Pair]  # Images with a label file, sorted by name.
  missing_labels: List[Tuple[str, str]]  # (image path, expected label path).
  duplicate_stems: List[Tuple[str, List[str]]]  # (stem, its image paths).
  orphan_labels: List[str]  # Label files whose image does not exist.


def find_pairs(root: str, split: str) -> SplitListing:
  """Lists a split's images and labels, collecting every naming problem."""
  folder = split_folder(root, split)
  images_dir = os.path.join(root, 'images', folder)
  labels_dir = os.path.join(root, 'labels', folder)
  pairs, missing = [], []
  images_by_stem = {}
  for file_name in sorted(os.listdir(images_dir)):
    if not _is_image_file(file_name):
      continue
    stem = os.path.splitext(file_name)[0]
    image_path = os.path.join(images_dir, file_name)
    images_by_stem.setdefault(stem, []).append(image_path)
    label_path = os.path.join(labels_dir, stem + '.png')
    if os.path.isfile(label_path):
      pairs.append(Pair(stem, image_path, label_path))
    else:
      missing.append((image_path, label_path))
  duplicates = [(stem, paths) for stem, paths in sorted(images_by_stem.items())
                if len(paths) > 1]
  orphans = []
  if os.path.isdir(labels_dir):
    orphans = [os.path.join(labels_dir, f) for f in sorted(os.listdir(labels_dir))
               if f.lower().endswith('.png') and not f.startswith('.')
               and os.path.splitext(f)[0] not in images_by_stem]
  return SplitListing(images_dir, labels_dir, pairs, missing, duplicates,
                      orphans)


def list_pairs(root: str, split: str) -> List[Pair]:
  """(name, image, label) of every image of a split, sorted by name.

  Raises on the first missing label, an empty split or a shared stem.
  """
  listing = find_pairs(root, split)
  if listing.missing_labels:
    image_path, label_path = listing.missing_labels[0]
    raise FileNotFoundError(
        f'Custom dataset: missing label file {label_path} for image '
        f'{image_path}.')
  if not listing.pairs:
    raise ValueError(
        f'Custom dataset: split {split!r} is empty: no '
        f'{"/".join(IMAGE_EXTENSIONS)} images in {listing.images_dir}.')
  if listing.duplicate_stems:
    duplicate = listing.duplicate_stems[0][0]
    raise ValueError(
        f'Custom dataset: two images in {listing.images_dir} share the stem '
        f'{duplicate!r} and so the label {duplicate}.png.')
  return listing.pairs


def read_class_names(root: str) -> Optional[Tuple[str, ...]]:
  """Names from DIR/classes.txt (blank lines skipped), or None without it."""
  path = os.path.join(root, CLASSES_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      names = tuple(line.strip() for line in f if line.strip())
  except UnicodeDecodeError as error:
    raise DataProblem(CLASSES_FILE_PROBLEM, path, f'is not UTF-8 text ({error}).') from error
  if not names:
    raise DataProblem(CLASSES_FILE_PROBLEM, path, 'lists no class names.')
  if len(names) > 255:
    raise DataProblem(CLASSES_FILE_PROBLEM, path,
                      f'lists {len(names)} classes; at most 255 fit uint8 labels next to '
                      'the ignore label.')
  return names


def _check_label_mode(path: str, mode: str) -> None:
  if mode not in _ID_LABEL_MODES:
    raise DataProblem(
        COLOUR_LABEL, path,
        f'is a {mode} image; labels must be single-channel PNGs (mode L or P) whose pixel '
        'values are class ids, not colours. Convert each colour to its class id first.',
        what='label')


def check_pair_headers(pair: Pair) -> None:
  """Fast checks from the file headers alone: readable, one channel, sizes.

  Sizes are the upright ones (EXIF orientation applied), as they are read.
  """
  try:
    image = image_files.read_header(pair.image_path)
  except image_files.UnreadableImageError as error:
    raise DataProblem(CORRUPT_IMAGE, pair.image_path, f'({error.reason}).',
                      what='unreadable or corrupt image') from error
  try:
    label = image_files.read_header(pair.label_path)
  except image_files.UnreadableImageError as error:
    raise DataProblem(CORRUPT_LABEL, pair.label_path, f'({error.reason}).',
                      what='unreadable or corrupt label') from error
  _check_label_mode(pair.label_path, label.mode)
  if (image.width, image.height) != (label.width, label.height):
    raise DataProblem(
        SIZE_MISMATCH, pair.image_path,
        f'is {image.width}x{image.height} (WxH) but its label {pair.label_path} is '
        f'{label.width}x{label.height}.', what='image')


def read_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3], upright; see `image_files` for the modes converted."""
  try:
    return image_files.read_rgb(path)
  except image_files.UnreadableImageError as error:
    raise DataProblem(CORRUPT_IMAGE, path, f'({error.reason}).',
                      what='unreadable or corrupt image') from (error.__cause__ or error)


def read_label(path: str) -> np.ndarray:
  """Class ids as uint8 [H, W, 1] (palette indices, never colours), upright."""
  try:
    label = image_files.read_stored_values(path)
  except image_files.UnreadableImageError as error:
    raise DataProblem(CORRUPT_LABEL, path, f'({error.reason}).',
                      what='unreadable or corrupt label') from (error.__cause__ or error)
  _check_label_mode(path, label.mode)
  ids = label.pixels
  if ids.size and ids.max() > 255:
    raise DataProblem(LABEL_VALUES, path,
                      f'has values up to {ids.max()}; class ids must fit in 0..255.', what='label')
  return ids.astype(np.uint8)[..., np.newaxis]


def check_label_values(path: str, label: np.ndarray, num_classes: int,
                       ignore_label: int) -> None:
  values = np.unique(label)
  bad = values[(values >= num_classes) & (values != ignore_label)]
  if bad.size:
    raise DataProblem(
        LABEL_VALUES, path,
        f'has values {bad.tolist()[:10]} >= num_classes={num_classes} that are not the '
        f'ignore label {ignore_label}.', what='label')


def read_pair(pair: Pair, num_classes: int, ignore_label: int):
  """The decoded, fully checked (image, label) of a pair."""
  image = read_image(pair.image_path)
  label = read_label(pair.label_path)
  if image.shape[:2] != label.shape[:2]:
    raise DataProblem(
        SIZE_MISMATCH, pair.image_path,
        f'is {image.shape[:2]} (HxW) but its label {pair.label_path} is {label.shape[:2]}.',
        what='image')
  check_label_values(pair.label_path, label, num_classes, ignore_label)
  return image, label


class InferredClasses(NamedTuple):
  num_classes: int  # 1 + the largest class id found.
  largest_id_files: Tuple[str, ...]  # The labels that hold that largest id.


def infer_num_classes(root: str, split: str,
                      ignore_label: int) -> InferredClasses:
  """1 + the largest class id in a split's labels (when there is no classes.txt).

  Decodes every label of the split, so the answer is kept (per process) until
  a label file of the split changes size or modification time: evaluation
  and prediction ask again without reading the labels again.
  """
  labels = []
  for pair in list_pairs(root, split):
    stat = os.stat(pair.label_path)
    labels.append((pair.label_path, stat.st_size, stat.st_mtime_ns))
  return _largest_class_id(tuple(labels), ignore_label)


@functools.lru_cache(maxsize=8)
def _largest_class_id(labels, ignore_label: int) -> InferredClasses:
  return classes_of_values(((path, np.unique(read_label(path))) for path, _, _ in labels),
                           ignore_label)


def classes_of_values(label_values: Iterable[Tuple[str, np.ndarray]],
                      ignore_label: int) -> InferredClasses:
  """The class count that (label path, values it holds) pairs imply: 1 + the largest id.

  The one rule for a folder without classes.txt: training (`infer_num_classes`)
  and the data check (from the values it has read) both count with it.
  """
  largest, holders = 0, []
  for path, values in label_values:
    values = values[values != ignore_label]
    if not values.size:
      continue
    if int(values.max()) > largest:
      largest, holders = int(values.max()), []
    if int(values.max()) == largest:
      holders.append(path)
  return InferredClasses(largest + 1, tuple(holders))


def validate_split(root: str, split: str, num_classes: int,
                   ignore_label: int = 255) -> int:
  """Reads every pair of a split, raising on the first bad file; returns the count."""
  pairs = list_pairs(root, split)
  for pair in pairs:
    check_pair_headers(pair)
    read_pair(pair, num_classes, ignore_label)
  return len(pairs)


def shard(pairs: list, process_index: int, process_count: int) -> list:
  """Host `process_index`'s contiguous slice, split as `tfds.even_splits` does:
  sizes differ by at most one, the first hosts taking the extra examples."""
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} is not in '
                     f'[0, process_count={process_count}).')
  base, extra = divmod(len(pairs), process_count)
  start = process_index * base + min(process_index, extra)
  end = start + base + (1 if process_index < extra else 0)
  return pairs[start:end]


def make_dataset(pairs: List[Pair], num_classes: int, ignore_label: int = 255,
                 *, shuffle_files: bool = False) -> tf.data.Dataset:
  """A dataset of {'image', 'label', 'name'} reading `pairs` from disk."""
  for pair in pairs:
    check_pair_headers(pair)
  by_name = {p.name: p for p in pairs}
  names = tf.data.Dataset.from_tensor_slices([p.name for p in pairs])
  if shuffle_files:
    names = names.shuffle(len(pairs), reshuffle_each_iteration=True)

  def read(name):
    return read_pair(by_name[name.decode('utf-8')], num_classes, ignore_label)

  def load(name):
    image, label = tf.numpy_function(read, [name], (tf.uint8, tf.uint8),
                                     stateful=False)
    image.set_shape([None, None, 3])
    label.set_shape([None, None, 1])
    return {'image': image, 'label': label, 'name': name}

  return names.map(load, num_parallel_calls=tf.data.AUTOTUNE,
                   deterministic=True)
