"""Training and evaluation batches from a host's shard of examples.

Both entry points take the *source* dataset (this host's shard of
`{'image', 'label', 'name'}` examples, e.g. from `datasets.load_split`), so
they work on any such dataset, including small in-memory ones in tests.

Training is deterministic and resumable: epoch e of host p is the shard in a
shuffle order seeded by (seed, p, e); the k-th example this host ever sees
gets the augmentation seed (seed, k * process_count + p), its global example
index. A run started at step s therefore skips exactly s * batch examples of
that stream and yields the same batches an uninterrupted run yields from s on.

Evaluation pads every host's shard with masked dummy examples up to a common
size, so that all hosts run the same number of steps.

Batches leave as uint8 images (pixels rounded to integers) and uint8 labels:
a quarter of float32's bytes to copy to the devices, where the steps cast
them. Evaluation images are never resized in VOC-like setups, so rounding
changes nothing there, and the evaluation step restores the exact padding
value from each example's height and width.
"""

import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from deeplab_jax.data import preprocessing

# Raw examples held by the training shuffle buffer. The original used 100 (after
# shuffling its 4-10 record files); decoded VOC images are ~0.75 MB each.
DEFAULT_SHUFFLE_BUFFER_SIZE = 512
# Epochs are drawn from an endless range; this is "forever" in practice.
_MAX_EPOCHS = 2**40
# Shuffle seeds: a fixed graph-level seed, and op seeds that differ for every
# (config seed, epoch, process) as long as epochs < _SEED_STRIDE.
_SHUFFLE_GRAPH_SEED = 0x5EED
_SEED_STRIDE = 1_000_003


def per_host_batch_size(batch_size: int, process_count: int,
                        field: str = 'global_batch_size') -> int:
  """`batch_size / process_count`, or a clear error when it does not divide."""
  if batch_size <= 0 or batch_size % process_count:
    raise ValueError(
        f'config.{field}={batch_size} must be a positive multiple of the '
        f'number of processes ({process_count}).')
  return batch_size // process_count


def _preprocess_options(config) -> dict:
  """The preprocessing keyword arguments shared by training and evaluation."""
  dataset = config.dataset
  return dict(
      min_resize_value=dataset.get('min_resize_value'),
      max_resize_value=dataset.get('max_resize_value'),
      resize_factor=dataset.get('resize_factor'),
      ignore_label=int(dataset.ignore_label),
      pad_pixel=preprocessing.mean_pixel(config.model.backbone),
  )


def _device_dtypes(image: tf.Tensor, label: tf.Tensor):
  """(uint8 image, uint8 label) as batches travel to the devices."""
  image = tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
  return image, tf.cast(label, tf.uint8)


def _shard_size(source: tf.data.Dataset, what: str) -> int:
  """The number of examples in `source`, counting them if tf.data cannot tell."""
  cardinality = int(source.cardinality())
  if cardinality == tf.data.INFINITE_CARDINALITY:
    raise ValueError(f'The {what} source dataset is infinite; pass one pass '
                     'over the shard (no repeat()).')
  if cardinality == tf.data.UNKNOWN_CARDINALITY:
    logging.warning('Counting the examples of the %s source (its size is '
                    'unknown to tf.data); this reads it once.', what)
    cardinality = int(source.reduce(tf.constant(0, tf.int64),
                                    lambda count, _: count + 1))
  if cardinality == 0:
    raise ValueError(f'The {what} source dataset of this host is empty.')
  return cardinality


def class_histogram(source: tf.data.Dataset, num_classes: int, ignore_label: int) -> np.ndarray:
  """Labelled pixels per class (int64 [C]) of this host's shard, read once.

  Ignored pixels and ids outside [0, C) are not counted.
  """
  def count(total, example):
    labels = tf.reshape(tf.cast(example['label'], tf.int32), [-1])
    labels = tf.boolean_mask(labels, (labels != ignore_label) & (labels >= 0)
                             & (labels < num_classes))
    return total + tf.math.bincount(labels, minlength=num_classes, maxlength=num_classes,
                                    dtype=tf.int64)
  return source.reduce(tf.zeros([num_classes], tf.int64), count).numpy()


def _deterministic_options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  return options


def create_train_dataset(config, source: tf.data.Dataset, *,
                         start_step: int = 0, process_index: int = 0,
                         process_count: int = 1,
                         num_examples: Optional[int] = None
                         ) -> tf.data.Dataset:
  """Endless training batches of this host, starting at `start_step`.

  Args:
    config: the experiment config (`seed`, `global_batch_size`,
      `train_crop_size`, the scale factors, `dataset.ignore_label`, optional
      `dataset.{min,max}_resize_value`, `dataset.resize_factor`,
      `shuffle_buffer_size`, and `model.backbone` for the padding value).
    source: one pass over this host's shard of raw examples.
    start_step: the first step to yield (a resumed run's step).
    process_index: this host's index.
    process_count: the number of hosts.
    num_examples: the shard's size, if `source` cannot tell (else counted).

  Returns:
    A dataset of `{'image': uint8 [B, h, w, 3], 'label': uint8 [B, h, w]}`
    with B = global_batch_size / process_count.
  """
  batch_size = per_host_batch_size(config.global_batch_size, process_count)
  if start_step < 0:
    raise ValueError(f'start_step={start_step} must be >= 0.')
  if num_examples is None:
    num_examples = _shard_size(source, 'training')
  crop_size = tuple(int(s) for s in config.train_crop_size)
  options = _preprocess_options(config)
  shuffle_buffer_size = int(
      config.get('shuffle_buffer_size', DEFAULT_SHUFFLE_BUFFER_SIZE))
  seed = int(config.seed)
  source = source.map(lambda example: {'image': example['image'],
                                       'label': example['label']})

  def epoch(index):
    # Dataset.shuffle combines its seed with the graph-level seed; pinning the
    # latter keeps the order independent of any tf.random.set_seed elsewhere.
    tf.compat.v1.get_default_graph().seed = _SHUFFLE_GRAPH_SEED
    shuffle_seed = (seed * _SEED_STRIDE + index) * process_count + process_index
    return source.shuffle(shuffle_buffer_size, seed=shuffle_seed,
                          reshuffle_each_iteration=False)

  first_example = start_step * batch_size
  first_epoch, offset = divmod(first_example, num_examples)
  examples = (tf.data.Dataset.range(first_epoch, _MAX_EPOCHS)
              .flat_map(epoch)
              .skip(offset)
              .enumerate(start=first_example))

  def preprocess(position, example):
    global_index = position * process_count + process_index
    example_seed = tf.stack([tf.constant(seed, tf.int64), global_index])
    image, label = preprocessing.preprocess_image_and_label(
        example['image'], example['label'], crop_size=crop_size,
        is_training=True, seed=example_seed,
        min_scale_factor=config.min_scale_factor,
        max_scale_factor=config.max_scale_factor,
        scale_factor_step_size=config.scale_factor_step_size, **options)
    image, label = _device_dtypes(image, label[..., 0])
    return {'image': image, 'label': label}

  return (examples
          .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
               deterministic=True)
          .batch(batch_size, drop_remainder=True)
          .prefetch(tf.data.AUTOTUNE)
          .with_options(_deterministic_options()))


def eval_examples_per_host(num_examples: int, process_count: int) -> int:
  """Examples every host evaluates (its shard padded up to the largest shard)."""
  if num_examples <= 0:
    raise ValueError(f'The evaluation split has {num_examples} examples.')
  return -(-num_examples // process_count)


def num_eval_steps(num_examples: int, eval_batch_size: int,
                   process_count: int = 1) -> int:
  """Evaluation steps per host for a split of `num_examples` in total."""
  batch_size = per_host_batch_size(eval_batch_size, process_count,
                                   'eval_batch_size')
  per_host = eval_examples_per_host(num_examples, process_count)
  return -(-per_host // batch_size)


def create_eval_dataset(config, source: tf.data.Dataset, *,
                        process_index: int = 0, process_count: int = 1,
                        num_examples_per_host: Optional[int] = None
                        ) -> tf.data.Dataset:
  """One padded pass over this host's evaluation shard, in file order.

  Args:
    config: the experiment config (`eval_batch_size`, `eval_crop_size`,
      `dataset.ignore_label`, optional resize options, `model.backbone`).
    source: one pass over this host's shard of raw examples.
    process_index: this host's index (unused by the data, kept for symmetry
      and error messages).
    process_count: the number of hosts.
    num_examples_per_host: examples each host evaluates, the same on every
      host: `eval_examples_per_host(total, process_count)`. Shards are cut or
      padded to it. Required with several hosts; one host uses its shard size.

  Returns:
    `num_eval_steps(...)` batches of `{'image': uint8 [B, h, w, 3], 'label':
    uint8 [B, h, w], 'mask': bool [B] (False on padding), 'name': string [B],
    'height', 'width': int32 [B] (image size before padding)}` with
    B = eval_batch_size / process_count and (h, w) = eval_crop_size. The
    padding pixels are the padding value rounded to an integer.
  """
  batch_size = per_host_batch_size(config.eval_batch_size, process_count,
                                   'eval_batch_size')
  if num_examples_per_host is None:
    if process_count > 1:
      raise ValueError(
          'create_eval_dataset needs num_examples_per_host with several '
          'processes, so that every host runs the same number of steps; use '
          'eval_examples_per_host(total_examples, process_count).')
    num_examples_per_host = _shard_size(source, 'evaluation')
  if num_examples_per_host <= 0:
    raise ValueError(f'num_examples_per_host={num_examples_per_host} on '
                     f'process {process_index} must be positive.')
  num_steps = -(-num_examples_per_host // batch_size)
  crop_height, crop_width = (int(s) for s in config.eval_crop_size)
  options = _preprocess_options(config)

  def preprocess(example):
    image, label = preprocessing.preprocess_image_and_label(
        example['image'], example['label'], crop_size=(crop_height, crop_width),
        is_training=False, name=example['name'], **options)
    # The size before padding (after any resize): predictions beyond it are
    # padding.
    height, width = _unpadded_size(example['image'], options)
    image, label = _device_dtypes(image, label[..., 0])
    return {'image': image, 'label': label, 'mask': tf.constant(True),
            'name': example['name'], 'height': height, 'width': width}

  pad_image, pad_label = _device_dtypes(
      tf.broadcast_to(tf.constant(options['pad_pixel'], tf.float32), [crop_height, crop_width, 3]),
      tf.fill([crop_height, crop_width], options['ignore_label']))
  padding = tf.data.Dataset.from_tensors({
      'image': pad_image,
      'label': pad_label,
      'mask': tf.constant(False),
      'name': tf.constant(''),
      'height': tf.constant(0, tf.int32),
      'width': tf.constant(0, tf.int32),
  }).repeat()
  return (source.take(num_examples_per_host)
          .map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
               deterministic=True)
          .concatenate(padding)
          .take(num_steps * batch_size)
          .batch(batch_size, drop_remainder=True)
          .prefetch(tf.data.AUTOTUNE)
          .with_options(_deterministic_options()))


def _unpadded_size(image: tf.Tensor, options: dict):
  shape = tf.shape(image)
  if options['min_resize_value'] is None:
    return shape[0], shape[1]
  size = preprocessing.resize_to_range_size(
      shape[0], shape[1], min_size=options['min_resize_value'],
      max_size=options['max_resize_value'], factor=options['resize_factor'])
  return size[0], size[1]


def measure_throughput(dataset: tf.data.Dataset, num_batches: int) -> float:
  """Images per second of `dataset` over `num_batches` batches.

  One batch is read first and not timed (it pays for start-up and buffers).
  For a per-core figure, build the dataset with
  `options.threading.private_threadpool_size = 1`.
  """
  if num_batches <= 0:
    raise ValueError(f'num_batches={num_batches} must be positive.')
  iterator = iter(dataset)
  next(iterator)
  num_images = 0
  start = time.perf_counter()
  for _ in range(num_batches):
    batch = next(iterator)
    num_images += int(tf.shape(batch['image'])[0])
  return num_images / (time.perf_counter() - start)
