"""Quickstart: a MobileNetV2 DeepLab from scratch on the generated shapes, on a CPU.

  python main.py --config=configs/quickstart.py --workdir=/tmp/deeplab_quickstart

Generates the `synthetic` dataset (TFDS, into <workdir>/tensorflow_datasets),
trains from random initialisation, evaluates on its validation split, and
writes an Orbax checkpoint, eval_results.json and comparison pictures. Sized
for a 2-core CPU: about 5 minutes to a validation mean IoU of ~0.65.
"""

from deeplab_jax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config()
  model = config.model
  model.backbone = 'mobilenet_v2'
  model.depth_multiplier = 0.5
  model.output_stride = 16
  model.atrous_rates = ()
  model.decoder_output_stride = None
  model.num_classes = 6

  config.dataset.name = 'synthetic'
  config.dataset.train_split = 'train'
  config.dataset.eval_split = 'validation'

  # Short from scratch, the activations' scale keeps drifting: moving averages
  # over hundreds of steps (decay 0.997 / 0.9997) lag so far behind that the
  # evaluation sees background only. Averages over ~10 steps keep up.
  model.batch_norm_decay = 0.9
  model.backbone_batch_norm_decay = 0.9

  config.num_train_steps = 1500
  config.global_batch_size = 8
  config.train_crop_size = (129, 129)
  config.min_scale_factor = 0.75
  config.max_scale_factor = 1.25
  # Adam (the later original's other optimizer) learns this from random
  # weights in far fewer steps than momentum SGD.
  config.optimizer = 'adam'
  config.learning_rate = 0.002
  config.weight_decay = 4e-5

  config.eval_crop_size = (161, 161)  # Synthetic images are at most 160 px.
  config.eval_batch_size = 10
  config.eval_every_steps = 100_000  # Only at the end: evaluation time is training time here.
  config.checkpoint_every_steps = 400
  config.keep_checkpoints = 2
  config.log_every_steps = 50
  config.num_prediction_images = 6
  config = config_defaults.apply_variant(config, arg)
  if arg == 'tiny':  # A smoke test: the small generated split, whole images in the eval crop.
    config.dataset.name = 'synthetic/tiny'
    config.eval_crop_size = (161, 161)
    config.dataset.min_resize_value = None  # Synthetic images fit that crop as they are.
    config.dataset.max_resize_value = None
    config.num_prediction_images = 2
  return config
