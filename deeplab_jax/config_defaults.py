"""The original DeepLab recipe, as one ml_collections config, and loading config files.

Every config file in configs/ starts from `get_config()` here and changes only
what its setup changes. Defaults equal the original `train.py` / `eval.py` /
`common.py` flags unless a comment says otherwise. The config files are read
by path, as `--config=configs/voc_mnv2.py` reads them (they are not a package):

  config = config_defaults.load_config('configs/voc_mnv2.py:tiny')
"""

import importlib.util
import os
import types

from absl import logging
import ml_collections
from ml_collections.config_dict import placeholder


def get_config():
  # Fields that may be None are typed placeholders: the command line cannot set
  # a plain None field (`--config.init_checkpoint=PREFIX` would be refused).
  config = ml_collections.ConfigDict()

  # --- Model (common.py ModelOptions) -------------------------------------
  config.model = model = ml_collections.ConfigDict()
  model.backbone = 'mobilenet_v2'  # mobilenet_v2 | xception_41/65/71 | resnet_v1_50/101_beta
  model.depth_multiplier = 1.0  # MobileNetV2 only.
  model.output_stride = 16  # 8, 16 or 32.
  model.atrous_rates = ()  # ASPP rates; () builds only image pooling + 1x1 (MobileNetV2 zoo).
  model.multi_grid = placeholder(tuple)  # e.g. (1, 2, 4) for the beta ResNets; None = (1, 1, 1).
  model.decoder_output_stride = placeholder(int)  # 4 for DeepLabv3+; None for no decoder.
  model.dense_prediction_cell = placeholder(str)  # None, a JSON path, or a shipped cell name.
  model.num_classes = 21
  model.add_image_level_feature = True
  # Pooling window of the image-level feature, as a crop size (h, w). None pools
  # globally; set it to the training crop to reproduce the original on larger
  # evaluation images (with image_pooling_stride).
  model.image_pooling_crop_size = placeholder(tuple)
  model.image_pooling_stride = (1, 1)
  model.aspp_with_separable_conv = True
  model.decoder_use_separable_conv = True
  model.image_pyramid = placeholder(tuple)  # Train-time pyramid scales, merged by `merge_method`.
  model.merge_method = 'max'
  # Moving-average decay of the head's batch norms (ASPP, DPC, decoder); the
  # backbones keep theirs. 0.9997 needs ~10k steps to forget its start: short
  # runs from scratch need a smaller one.
  model.batch_norm_decay = 0.9997
  # The same for the backbone; None keeps its own (0.997 MobileNetV2, 0.9997
  # Xception, 0.95 ResNet).
  model.backbone_batch_norm_decay = placeholder(float)
  # From scratch: start the last batch norm of every residual branch with
  # gamma 0, so each residual unit begins as the identity (Goyal et al. 2017;
  # torchvision's `zero_init_residual`). A loaded checkpoint overrides it. For
  # ResNet this also starts the decoder's low-level features (a conv3 output)
  # at zero.
  model.zero_init_residual = False
  model.dtype = 'float32'  # Compute dtype ('bfloat16' on TPU); parameters stay float32.
  model.remat = False  # Rematerialise backbone blocks to save memory at large crops.
  # How depthwise and 1x1 convs are computed (same results up to rounding):
  # 'auto' takes the fastest measured for the backend, a sum of shifted slices
  # ('shifted') and 2-D matmuls ('matmul') on CPU, `lax.conv` ('conv')
  # elsewhere. Set one to compare speeds (benchmarks/inference.py --pointwise_kernel=conv).
  model.depthwise_kernel = 'auto'  # auto | shifted | conv
  model.pointwise_kernel = 'auto'  # auto | matmul | conv

  # --- Data ----------------------------------------------------------------
  config.dataset = dataset = ml_collections.ConfigDict()
  dataset.name = 'pascal_voc'
  # TFDS data dir (None = TFDS default), or the folder of a `custom` dataset.
  dataset.data_dir = placeholder(str)
  # Where downloaded archives are, when there is no network.
  dataset.manual_dir = placeholder(str)
  dataset.train_split = 'train_aug'
  dataset.eval_split = 'validation'
  dataset.ignore_label = 255
  # The original's optional `resize_to_range` before scaling/cropping, at train
  # and eval (input_pipeline reads these): None = no resize. ADE20K resizes to
  # min = max = 513 with factor 16 (the output stride) so sizes are 16k + 1.
  dataset.min_resize_value = placeholder(int)
  dataset.max_resize_value = placeholder(int)
  dataset.resize_factor = placeholder(int)

  # --- Training (train.py flags) ------------------------------------------
  config.seed = 0
  config.num_train_steps = 30_000
  config.global_batch_size = 16  # The paper's VOC batch; train.py's flag default is 8.
  # Micro-batches per optimizer step: each device runs its part of the batch in
  # this many pieces, so batch 16 at 513x513 fits a device that holds 4 at once.
  # The gradient is the whole batch's; batch norm normalises each micro-batch
  # by its own statistics (as mmseg and HF Trainer do) and updates its moving
  # averages once per micro-batch. Needs a batch per device divisible by it.
  config.accumulation_steps = 1
  config.train_crop_size = (513, 513)
  config.min_scale_factor = 0.5
  config.max_scale_factor = 2.0
  config.scale_factor_step_size = 0.25
  config.learning_policy = 'poly'  # poly | step
  config.learning_rate = 0.007  # The VOC train_aug recipe (the flag default is 1e-4).
  config.learning_power = 0.9
  config.learning_rate_decay_factor = 0.1  # step policy only
  config.learning_rate_decay_step = 2000  # step policy only
  config.slow_start_step = 0
  config.slow_start_learning_rate = 1e-4
  config.optimizer = 'momentum'  # momentum | adam (the later original's choices)
  config.momentum = 0.9
  config.weight_decay = 4e-5
  config.fine_tune_batch_norm = True  # False freezes BN statistics (gamma/beta still train).
  # Keep an exponential moving average of the weights (e.g. 0.999) and evaluate,
  # checkpoint and export it: a cheap gain on short schedules. None = off, as in
  # the original. Early steps use min(decay, (1 + step) / (10 + step)).
  config.ema_decay = placeholder(float)
  # "Precise BN": before each evaluation and each periodic or final checkpoint,
  # replace the batch-norm moving averages by the statistics of the model as it
  # is, over this many training batches (the run's first ones, read by their
  # own pipeline). The moving averages lag a run whose weights still move fast
  # (a short run from scratch) and evaluation then sees one class; after a long
  # fine-tuning they are right. 0 keeps the original's moving averages.
  config.precise_batch_norm_batches = 0
  config.upsample_logits = True  # Upsample logits to the labels (else downsample labels).
  config.top_k_percent_pixels = 1.0  # < 1 mines the hardest pixels.
  config.hard_example_mining_step = 0
  # > 0 adds an auxiliary classifier on the backbone's features, trained with
  # this weight on its cross-entropy (PSPNet's deep supervision; mmsegmentation
  # uses 0.4). Predictions do not use it, but its variables are in the
  # checkpoints: evaluate and predict with the same value. 0 is the original.
  config.auxiliary_loss_weight = 0.0
  # Per-class loss weights for imbalanced classes: None (unweighted, the
  # original), 'auto' (median-frequency balancing of the training split's
  # pixel histogram, scaled to a mean pixel weight of 1) or 'w0,w1,...'. Each
  # pixel's loss is multiplied by its class's weight and the sum is divided by
  # the number of pixels with non-zero weight, as the later original's
  # `label_weights` do.
  config.class_weights = placeholder(str)
  config.last_layer_gradient_multiplier = 1.0
  config.last_layers_contain_logits_only = False

  # Initialisation: a model-zoo / ImageNet TF checkpoint prefix, or an Orbax
  # checkpoint directory. Ignored once the workdir has its own checkpoint.
  config.init_checkpoint = placeholder(str)
  config.initialize_last_layer = True

  # --- Evaluation (eval.py flags) -----------------------------------------
  # None: the training crop (`resolve_eval_crop_size`), for 'slide' below.
  config.eval_crop_size = (513, 513)
  config.eval_batch_size = 8
  config.eval_scales = (1.0,)
  config.eval_flip = False
  # 'whole': each image padded to eval_crop_size and predicted at once (the
  # original's eval.py; images larger than the crop are shrunk by predict and
  # export, and evaluation needs a crop as large as the largest image).
  # 'slide': overlapping windows of eval_crop_size, eval_slide_stride apart,
  # with their scores averaged where they overlap (mmsegmentation's
  # mode='slide'): full-resolution Cityscapes, aerial tiles or phone photos
  # with the crop the model trained on. Equal to 'whole' on images that fit
  # one window; eval_scales / eval_flip apply to each window.
  config.eval_mode = 'whole'
  # (h, w) step between windows; None = two thirds of eval_crop_size (mmseg's
  # 512 crop / 341 stride): smaller steps average more windows and cost more.
  config.eval_slide_stride = placeholder(tuple)
  config.eval_every_steps = 2000
  config.num_eval_images = placeholder(int)  # None = the whole split.

  # --- Bookkeeping ---------------------------------------------------------
  config.log_every_steps = 10
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.num_prediction_images = 8  # Prediction overlays written at each evaluation.
  return config


def resolve_eval_crop_size(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """An unset `eval_crop_size` becomes `train_crop_size`, whatever the command
  line made that: evaluation windows then show the model what its training
  crops showed it. In place, once at startup before the checks (and by the
  Predictor and export on their copy); returns `config`."""
  if config.get('eval_crop_size') is None:
    config.eval_crop_size = tuple(int(c) for c in config.train_crop_size)
    logging.info('config.eval_crop_size is unset: evaluating with the training crop %s.',
                 config.eval_crop_size)
  return config


def apply_variant(config, arg=None):
  """`configs/X.py:tiny` turns any setup into a small variant that runs on a CPU."""
  if not arg:
    return config
  if arg != 'tiny':
    raise ValueError(f'Unknown config argument {arg!r}; the only variant is "tiny".')
  config.num_train_steps = 20
  config.global_batch_size = 2
  config.train_crop_size = (129, 129)
  config.eval_crop_size = (129, 129)
  # Real images (VOC up to 500 px, Cityscapes 1024x2048) are shrunk to fit that
  # crop, as the original's resize_to_range does, at training and evaluation.
  config.dataset.min_resize_value = 129
  config.dataset.max_resize_value = 129
  config.eval_batch_size = 2
  config.num_eval_images = 4
  config.eval_every_steps = 10
  config.checkpoint_every_steps = 10
  config.log_every_steps = 5
  return config


def set_cityscapes(config):
  """What every Cityscapes setup shares (cityscapes.md).

  19 train ids, 769x769 training crops and whole 1025x2049 images at
  evaluation, 90k steps. Where a whole 1025x2049 image does not fit the accelerator's memory (output
  stride 8, large backbones), evaluate at full resolution with sliding windows
  instead: --config.eval_mode=slide --config.eval_crop_size=769,769 (or 513,513)
  --config.eval_slide_stride=513,513 (mmsegmentation's slide mode; scores differ
  slightly from the whole-image recipe, as image pooling then sees a window).
  """
  config.model.num_classes = 19
  config.dataset.name = 'cityscapes'
  config.dataset.train_split = 'train'
  config.dataset.eval_split = 'validation'
  config.num_train_steps = 90_000
  config.global_batch_size = 8  # The guidance: BN fine-tuning needs a batch above 8.
  config.train_crop_size = (769, 769)
  config.eval_crop_size = (1025, 2049)
  config.eval_batch_size = 1
  return config


def load_config_module(path: str) -> types.ModuleType:
  """The config file at `path` as a module, loaded by path as `--config=` loads it."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such config file.')
  spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise ValueError(f'{path}: the file has no get_config().')
  return module


def load_config(path_and_arg: str):
  """`PATH[:arg]` (e.g. 'configs/voc_mnv2.py:tiny') -> that file's `get_config(arg)`."""
  path, _, arg = path_and_arg.partition(':')
  return load_config_module(path).get_config(arg or None)
