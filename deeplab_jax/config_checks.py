"""Every setting of an experiment config checked at startup, before anything is
written or compiled.

A bad value found here costs the user a second and names the field and the
fix; found later it costs a compile (minutes on an accelerator), a half-made
workdir, or a crash at the first evaluation thousands of steps in. Checks that
need the data (the evaluation crop against the images) are in
`check_eval_crop_fits`, called once the dataset's facts are known.
"""

import numbers
from typing import Optional, Sequence, Tuple

import ml_collections

from deeplab_jax import layers
from deeplab_jax.backbones import BACKBONES

DTYPES = ('float32', 'bfloat16', 'float16')
OUTPUT_STRIDES = (8, 16, 32)


class ConfigError(ValueError):
  """A setting that cannot work; the message names the field and the fix."""


def _is_int(value) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fail(field: str, value, why: str):
  raise ConfigError(f'config.{field}={value!r} {why}.')


def _positive_int(config, field: str, *, allow_none: bool = False, minimum: int = 1):
  value = _get(config, field)
  if value is None and allow_none:
    return
  if not _is_int(value) or value < minimum:
    _fail(field, value, f'must be an integer >= {minimum}')


def _number_in(config, field: str, low: float, high: float, *, low_open=False,
               high_open=False, allow_none=False):
  value = _get(config, field)
  if value is None and allow_none:
    return
  below = value <= low if low_open else value < low
  above = value >= high if high_open else value > high
  if not _is_number(value) or below or above:
    interval = f'{"(" if low_open else "["}{low}, {high}{")" if high_open else "]"}'
    _fail(field, value, f'must be a number in {interval}')


def _choice(config, field: str, choices: Sequence, *, allow_none: bool = False):
  value = _get(config, field)
  if value is None and allow_none:
    return
  if value not in choices:
    _fail(field, value, f'must be one of {list(choices)}')


def _get(config, field: str):
  """The value of a dotted field; a missing field reads as None."""
  node = config
  for part in field.split('.'):
    node = node.get(part) if hasattr(node, 'get') else None
  return node


def _size(config, field: str, minimum: int) -> Tuple[int, int]:
  """A (height, width) pair of integers >= minimum."""
  value = _get(config, field)
  if (not isinstance(value, (tuple, list)) or len(value) != 2
      or not all(_is_int(v) and v >= minimum for v in value)):
    _fail(field, value, f'must be (height, width), two integers >= {minimum} (e.g. '
          f'--config.{field}=513,513)')
  return int(value[0]), int(value[1])


def _integers(config, field: str, *, length: Optional[int] = None, allow_none=False):
  value = _get(config, field)
  if value is None and allow_none:
    return
  if (not isinstance(value, (tuple, list)) or not all(_is_int(v) and v >= 1 for v in value)
      or (length is not None and len(value) != length)):
    count = f'{length} ' if length is not None else ''
    _fail(field, value, f'must be a tuple of {count}positive integers')


def _positive_numbers(config, field: str, *, allow_none=False):
  value = _get(config, field)
  if value is None and allow_none:
    return
  if (not isinstance(value, (tuple, list)) or not value
      or not all(_is_number(v) and v > 0 for v in value)):
    _fail(field, value, 'must be a non-empty tuple of positive numbers')


def check_model(config: ml_collections.ConfigDict) -> None:
  """`config.model`: everything `create_model` and the modules read."""
  _choice(config, 'model.backbone', BACKBONES)
  _choice(config, 'model.output_stride', OUTPUT_STRIDES)
  _number_in(config, 'model.depth_multiplier', 0.0, 4.0, low_open=True)
  _integers(config, 'model.atrous_rates')
  _integers(config, 'model.multi_grid', length=3, allow_none=True)
  decoder_stride = _get(config, 'model.decoder_output_stride')
  if decoder_stride is not None and decoder_stride != 4:
    _fail('model.decoder_output_stride', decoder_stride,
          "must be 4 (the stride of the backbones' low-level features) or None (no decoder)")
  num_classes = _get(config, 'model.num_classes')
  if num_classes is not None and (not _is_int(num_classes) or num_classes < 2):
    _fail('model.num_classes', num_classes,
          'must be an integer >= 2 (background counts as a class)')
  _integers(config, 'model.image_pooling_crop_size', length=2, allow_none=True)
  _integers(config, 'model.image_pooling_stride', length=2, allow_none=True)
  _positive_numbers(config, 'model.image_pyramid', allow_none=True)
  _choice(config, 'model.merge_method', ('max', 'avg'))
  _number_in(config, 'model.batch_norm_decay', 0.0, 1.0, high_open=True)
  _number_in(config, 'model.backbone_batch_norm_decay', 0.0, 1.0, high_open=True,
             allow_none=True)
  _choice(config, 'model.zero_init_residual', (True, False))
  _choice(config, 'model.dtype', DTYPES)
  _choice(config, 'model.depthwise_kernel', ('auto', *layers.DEPTHWISE_KERNELS))
  _choice(config, 'model.pointwise_kernel', ('auto', *layers.POINTWISE_KERNELS))
  cell = _get(config, 'model.dense_prediction_cell')
  if cell:  # None or '' (`--config.model.dense_prediction_cell=`): ASPP.
    from deeplab_jax.heads import dense_prediction_cell  # pylint: disable=g-import-not-at-top
    dense_prediction_cell.load_cell_config(cell)  # Names the file and what is wrong.


def _crop_minimum(config) -> int:
  # The smallest input whose features have at least 2x2 positions.
  return int(_get(config, 'model.output_stride') or 16) + 1


def check_evaluation(config: ml_collections.ConfigDict, num_devices: int,
                     num_processes: int = 1) -> None:
  """The settings evaluation, prediction and export read."""
  _size(config, 'eval_crop_size', _crop_minimum(config))
  _positive_numbers(config, 'eval_scales')
  _choice(config, 'eval_flip', (True, False))
  _choice(config, 'eval_mode', ('whole', 'slide'), allow_none=True)  # None: 'whole'.
  if _get(config, 'eval_slide_stride') is not None:
    stride = _size(config, 'eval_slide_stride', 1)
    crop = _size(config, 'eval_crop_size', 1)
    if stride[0] > crop[0] or stride[1] > crop[1]:
      _fail('eval_slide_stride', _get(config, 'eval_slide_stride'),
            f'must not exceed config.eval_crop_size={crop}: windows further apart than the '
            'crop leave pixels unpredicted')
  _batch_size(config, 'eval_batch_size', num_devices, num_processes)
  _positive_int(config, 'num_eval_images', allow_none=True)
  _positive_int(config, 'num_prediction_images', minimum=0)
  ignore_label = _get(config, 'dataset.ignore_label')
  if not _is_int(ignore_label) or not 0 <= ignore_label <= 255:
    _fail('dataset.ignore_label', ignore_label,
          'must fit the uint8 labels (0..255; 255 is the usual void label)')
  _positive_int(config, 'dataset.min_resize_value', allow_none=True)
  _positive_int(config, 'dataset.max_resize_value', allow_none=True)
  _positive_int(config, 'dataset.resize_factor', allow_none=True)


def _batch_size(config, field: str, num_devices: int, num_processes: int) -> None:
  value = _get(config, field)
  if not _is_int(value) or value < 1 or value % num_devices or value % num_processes:
    _fail(field, value, f'must be a positive multiple of the number of devices ({num_devices}'
          f'{f", on {num_processes} processes" if num_processes > 1 else ""}): each device '
          'gets an equal part of the batch')


def check_training(config: ml_collections.ConfigDict, num_devices: int,
                   num_processes: int = 1) -> None:
  """The settings of the training loop, optimizer, loss and bookkeeping."""
  _positive_int(config, 'num_train_steps')
  _batch_size(config, 'global_batch_size', num_devices, num_processes)
  _size(config, 'train_crop_size', _crop_minimum(config))
  _positive_int(config, 'accumulation_steps')
  _number_in(config, 'ema_decay', 0.0, 1.0, low_open=True, high_open=True, allow_none=True)
  micro_batches = config.get('accumulation_steps', 1)
  if config.global_batch_size % (num_devices * micro_batches):
    _fail('accumulation_steps', micro_batches, f'must divide the batch of each device '
          f'(global_batch_size={config.global_batch_size} over {num_devices} devices)')
  if micro_batches > 1 and len(config.model.get('image_pyramid') or ()) > 1:
    _fail('accumulation_steps', micro_batches, 'needs a single training scale '
          '(config.model.image_pyramid=None): each scale has its own loss normaliser')
  _number_in(config, 'min_scale_factor', 0.0, 100.0, low_open=True)
  _number_in(config, 'max_scale_factor', 0.0, 100.0, low_open=True)
  if config.min_scale_factor > config.max_scale_factor:
    _fail('min_scale_factor', config.min_scale_factor,
          f'must not exceed config.max_scale_factor={config.max_scale_factor}')
  _number_in(config, 'scale_factor_step_size', 0.0, 100.0)
  _choice(config, 'learning_policy', ('poly', 'step'))
  _number_in(config, 'learning_rate', 0.0, 1e3, low_open=True)
  _number_in(config, 'learning_power', 0.0, 1e3)
  if config.learning_policy == 'step':
    _positive_int(config, 'learning_rate_decay_step')
  _positive_int(config, 'slow_start_step', minimum=0)
  _choice(config, 'optimizer', ('momentum', 'adam'))
  _number_in(config, 'momentum', 0.0, 1.0, high_open=True)
  _number_in(config, 'weight_decay', 0.0, 1.0)
  _number_in(config, 'top_k_percent_pixels', 0.0, 1.0, low_open=True)
  _positive_int(config, 'hard_example_mining_step', minimum=0)
  _number_in(config, 'auxiliary_loss_weight', 0.0, 1e3)
  if (config.auxiliary_loss_weight > 0 and micro_batches > 1
      and config.top_k_percent_pixels < 1.0):
    _fail('auxiliary_loss_weight', config.auxiliary_loss_weight,
          'cannot be combined with accumulation_steps > 1 and top_k_percent_pixels < 1: '
          'the micro-batches share one loss normaliser, which the mined pixels would not')
  _positive_int(config, 'precise_batch_norm_batches', minimum=0, allow_none=True)
  explicit_class_weights(_get(config, 'class_weights'))
  _positive_int(config, 'log_every_steps')
  _positive_int(config, 'eval_every_steps')
  _positive_int(config, 'checkpoint_every_steps')
  value = _get(config, 'keep_checkpoints')
  if not _is_int(value) or value < 1:
    _fail('keep_checkpoints', value, 'must be at least 1: with 0 every checkpoint would be '
          'deleted right after it is written')


def explicit_class_weights(value) -> Optional[Tuple[float, ...]]:
  """The weights of a 'w0,w1,...' `config.class_weights`; None for None or 'auto'.

  Raises ConfigError unless they are non-negative numbers (their count, one
  per class, is checked where the class count is known).
  """
  if value is None or value == 'auto':
    return None
  try:
    weights = tuple(float(w) for w in str(value).split(','))
  except ValueError:
    weights = (-1.0,)
  if any(not w >= 0 for w in weights):
    _fail('class_weights', value, "must be 'auto' or comma-separated non-negative numbers, "
          'one per class (e.g. 0.5,1,4)')
  return weights


def check_class_weights_count(config: ml_collections.ConfigDict) -> Optional[Tuple[float, ...]]:
  """`explicit_class_weights` of the config, refused unless one per class.

  Needs `config.model.num_classes` (known once the dataset is resolved).
  """
  value = _get(config, 'class_weights')
  weights = explicit_class_weights(value)
  num_classes = config.model.num_classes
  if weights is not None and len(weights) != num_classes:
    raise ConfigError(f'config.class_weights={value!r} has {len(weights)} weights for '
                      f'{num_classes} classes: give one per class.')
  return weights


def check_config(config: ml_collections.ConfigDict, mode: str, num_devices: int,
                 num_processes: int = 1) -> None:
  """Raises ConfigError for the first setting of `config` that `mode` cannot use."""
  if mode == 'check_data':
    return  # Reads only config.dataset, and reports on it itself.
  check_model(config)
  check_evaluation(config, num_devices, num_processes)
  if mode == 'train':
    check_training(config, num_devices, num_processes)


def resized_size_bound(config, largest: Optional[Tuple[int, int]]
                       ) -> Optional[Tuple[int, int]]:
  """The largest (height, width) an evaluation image can have after the
  dataset's `resize_to_range`, or None when nothing bounds it."""
  dataset = config.dataset
  if dataset.get('min_resize_value') is None:
    return largest  # No resizing (the input pipeline resizes only with a minimum).
  if dataset.get('max_resize_value') is None:
    return None  # Short sides go up to the minimum: long sides are unbounded.
  bound = int(dataset.max_resize_value)
  return bound, bound


def check_eval_crop_fits(config, largest: Optional[Tuple[int, int]], what: str) -> None:
  """Evaluation pads every image to `eval_crop_size` and cannot shrink one:
  refuses a crop smaller than the largest evaluation image (`what` says where
  that size comes from). Slide mode needs only a known bound: it pads every
  image to a canvas that holds the largest and slides crop-sized windows."""
  bound = resized_size_bound(config, largest)
  if _get(config, 'eval_mode') == 'slide':
    if bound is None:
      raise ConfigError(
          f"config.eval_mode='slide' pads the evaluation images to one canvas, but the size of "
          f'{what} is not bounded: pass --config.dataset.max_resize_value=N (with '
          "min_resize_value) to bound it, or use --config.eval_mode=whole.")
    return
  if bound is None:
    return
  crop = tuple(int(c) for c in config.eval_crop_size)
  if bound[0] > crop[0] or bound[1] > crop[1]:
    fit = [-(-(b - 1) // 16) * 16 + 1 for b in bound]  # The sizes 16k + 1 that hold them.
    raise ConfigError(
        f'config.eval_crop_size={crop} is smaller than the evaluation images ({what}: up to '
        f'{bound[0]}x{bound[1]}, HxW): evaluation would fail at its first batch. Pass '
        f'--config.eval_crop_size={fit[0]},{fit[1]}, or resize them with '
        f'--config.dataset.min_resize_value=N --config.dataset.max_resize_value=N '
        f'(N <= {min(crop)}).')
