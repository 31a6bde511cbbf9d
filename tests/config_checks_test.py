"""Startup checks of every setting (deeplab_jax/config_checks.py) on the shipped configs."""

import os

import pytest

from deeplab_jax import config_checks
from deeplab_jax import config_defaults
from deeplab_jax.data import datasets
import config_files

CONFIG_NAMES = sorted(name[:-3] for name in os.listdir(config_files.CONFIGS_DIR)
                      if name.endswith('.py'))


def shipped_config(name, variant=None):
  module = config_files.module(name)
  return module.get_config(variant) if variant else module.get_config()


@pytest.mark.parametrize('variant', [None, 'tiny'])
@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_every_shipped_config_passes_and_its_eval_crop_holds_its_images(name, variant):
  """Issue 16: the VOC and Cityscapes `:tiny` variants trained, then crashed at
  their first evaluation on real images (up to 500x500 and 1024x2048) that do
  not fit a 129x129 crop. They now shrink the images to it."""
  config = shipped_config(name, variant)
  config_defaults.resolve_eval_crop_size(config)  # As main.py does first.
  config_checks.check_config(config, 'train', num_devices=1)
  if config.dataset.name == 'custom':
    return  # Its images are the user's (checked from the files at startup).
  largest = datasets._tfds_entry(config.dataset).largest_image  # pylint: disable=protected-access
  config_checks.check_eval_crop_fits(config, largest, config.dataset.name)


def test_custom_evaluates_in_windows_of_the_crop_it_trains_on():
  # `--config.train_crop_size=129,129` alone: evaluation follows it.
  config = shipped_config('custom')
  config.train_crop_size = (129, 129)
  config_defaults.resolve_eval_crop_size(config)
  assert (config.eval_mode, config.eval_crop_size) == ('slide', (129, 129))
  # A crop of its own is kept, and other configs keep theirs.
  config = shipped_config('custom')
  config.train_crop_size, config.eval_crop_size = (129, 129), (193, 193)
  config_defaults.resolve_eval_crop_size(config)
  assert config.eval_crop_size == (193, 193)
  config = shipped_config('voc_mnv2')
  config.train_crop_size = (321, 321)
  config_defaults.resolve_eval_crop_size(config)
  assert config.eval_crop_size == (513, 513)


def test_a_crop_smaller_than_the_images_is_refused_with_a_crop_that_fits():
  config = shipped_config('voc_mnv2')
  config.eval_crop_size = (321, 321)
  with pytest.raises(config_checks.ConfigError, match=r'eval_crop_size=\(321, 321\).*up to '
                     r'500x500.*--config.eval_crop_size=513,513'):
    config_checks.check_eval_crop_fits(config, (500, 500), 'pascal_voc validation')
  config.dataset.min_resize_value = config.dataset.max_resize_value = 321
  config_checks.check_eval_crop_fits(config, (500, 500), 'pascal_voc validation')
  config.dataset.max_resize_value = None  # Short sides grow to 321; long ones are unbounded.
  config_checks.check_eval_crop_fits(config, (500, 500), 'pascal_voc validation')


def test_batch_sizes_must_split_evenly_over_devices_and_processes():
  config = shipped_config('voc_mnv2')
  config.eval_batch_size = 6
  config_checks.check_config(config, 'eval', num_devices=2)
  with pytest.raises(config_checks.ConfigError, match=r'eval_batch_size=6 .* devices \(4\)'):
    config_checks.check_config(config, 'eval', num_devices=4)
  config.eval_batch_size, config.global_batch_size = 8, 12
  with pytest.raises(config_checks.ConfigError, match='global_batch_size=12'):
    config_checks.check_config(config, 'train', num_devices=8, num_processes=2)


@pytest.mark.parametrize('field, value', [
    ('keep_checkpoints', 0), ('checkpoint_every_steps', 0), ('train_crop_size', (0, 0)),
    ('train_crop_size', (513,)), ('model.output_stride', 4), ('model.multi_grid', (1, 2)),
    ('model.batch_norm_decay', 1.0), ('learning_policy', 'cosine'), ('momentum', 1.5),
    ('scale_factor_step_size', -0.25), ('eval_flip', 'yes'), ('precise_batch_norm_batches', -1),
    ('class_weights', '1,x'), ('class_weights', '1,-2'), ('auxiliary_loss_weight', -0.4),
    ('model.zero_init_residual', 'yes'),
])
def test_a_bad_value_names_its_field(field, value):
  config = shipped_config('voc_mnv2')
  parent, _, leaf = ('config.' + field).rpartition('.')
  target = config.model if parent == 'config.model' else config
  with target.ignore_type():
    setattr(target, leaf, value)
  with pytest.raises(config_checks.ConfigError, match=rf'^config\.{field}='):
    config_checks.check_config(config, 'train', num_devices=1)


def test_an_auxiliary_loss_with_micro_batches_refuses_pixel_mining():
  config = shipped_config('voc_mnv2')
  config.auxiliary_loss_weight, config.accumulation_steps = 0.4, 2
  config_checks.check_config(config, 'train', num_devices=1)
  config.top_k_percent_pixels = 0.25
  with pytest.raises(config_checks.ConfigError, match=r'^config\.auxiliary_loss_weight=0\.4 '
                     r'cannot be combined with accumulation_steps > 1 and top_k_percent_pixels'):
    config_checks.check_config(config, 'train', num_devices=1)


def test_training_settings_are_not_checked_when_only_reading_a_model():
  config = shipped_config('voc_mnv2')
  config.checkpoint_every_steps = 0  # A training setting: eval, predict and export never use it.
  config_checks.check_config(config, 'predict', num_devices=1)
  with pytest.raises(config_checks.ConfigError):
    config_checks.check_config(config, 'train', num_devices=1)
