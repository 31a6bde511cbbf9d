r"""Training-preprocessing throughput per CPU core: one JSON line.

  python benchmarks/input_pipeline.py --config=configs/voc_mnv2.py \
      [--crop_size=513] [--threads=1] [--batch_size=8]

Synthetic VOC-sized examples (JPEG photo-like images, PNG label maps) are
decoded and run through `deeplab_jax.data.input_pipeline.create_train_dataset`
(random scale 0.5-2, crop, flip, padding) on a tf.data pool of `--threads`
threads. A host must deliver global_batch / step_time images per second, so
cores needed = that rate / images_per_second_per_core.
"""

import os

from absl import app
from absl import flags

import common  # pylint: disable=g-bad-import-order

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from deeplab_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string('config', 'configs/voc_mnv2.py', 'Config file.')
flags.DEFINE_list('crop_size', ['513'], 'Training crop "S" or "H,W".')
flags.DEFINE_integer('batch_size', 8, 'Batch size of the pipeline.')
flags.DEFINE_integer('threads', 1, 'tf.data private thread-pool size (= cores used).')
flags.DEFINE_integer('num_examples', 32, 'Distinct synthetic examples (cycled).')
flags.DEFINE_integer('num_batches', 20, 'Timed batches.')
flags.DEFINE_integer('height', 375, 'Synthetic image height (VOC: ~375).')
flags.DEFINE_integer('width', 500, 'Synthetic image width (VOC: ~500).')


def synthetic_examples(count: int, height: int, width: int, num_classes: int):
  """Encoded (JPEG image, PNG label) pairs with smooth content, like photos."""
  rng = np.random.default_rng(0)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  jpegs, pngs = [], []
  for _ in range(count):
    phase = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(0.005, 0.05, 3)
    image = np.stack([127 + 100 * np.sin(freq[c] * (xx + yy * c) + phase[c]) for c in range(3)],
                     axis=-1)
    image += rng.normal(0, 12, image.shape)  # Texture, so JPEG does real work.
    label = (((xx // 60) + (yy // 45)) % num_classes).astype(np.uint8)
    label[:, :4] = 255
    jpegs.append(tf.io.encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), quality=90).numpy())
    pngs.append(tf.io.encode_png(label[..., None]).numpy())
  return jpegs, pngs


def encoded_source(jpegs, pngs) -> tf.data.Dataset:
  """Decodes on read, as a TFDS source does."""
  data = tf.data.Dataset.from_tensor_slices({'image': jpegs, 'label': pngs})
  return data.map(lambda e: {'image': tf.io.decode_jpeg(e['image'], channels=3),
                             'label': tf.io.decode_png(e['label'], channels=1)})


def main(argv):
  del argv
  config = common.load_config(FLAGS.config)
  config.train_crop_size = common.crop_from_flag(FLAGS.crop_size, config.train_crop_size)
  config.global_batch_size = FLAGS.batch_size
  jpegs, pngs = synthetic_examples(FLAGS.num_examples, FLAGS.height, FLAGS.width,
                                   config.model.num_classes)
  dataset = input_pipeline.create_train_dataset(
      config, encoded_source(jpegs, pngs), num_examples=FLAGS.num_examples)
  options = tf.data.Options()
  options.threading.private_threadpool_size = FLAGS.threads
  dataset = dataset.with_options(options)
  rate = input_pipeline.measure_throughput(dataset, FLAGS.num_batches)
  common.print_record({
      'benchmark': 'input_pipeline', 'config': FLAGS.config,
      'crop_size': list(config.train_crop_size), 'batch_size': FLAGS.batch_size,
      'threads': FLAGS.threads, 'source_size': [FLAGS.height, FLAGS.width],
      'images_per_second': round(rate, 2),
      'images_per_second_per_core': round(rate / FLAGS.threads, 2),
      'seconds_per_image_per_core': round(FLAGS.threads / rate, 5),
      'mean_jpeg_kb': round(float(np.mean([len(j) for j in jpegs])) / 1024, 1),
      'peak_rss_mb': round(common.peak_rss_mb(), 1),
      'load_average_1min': round(os.getloadavg()[0], 2),
  })


if __name__ == '__main__':
  app.run(main)
