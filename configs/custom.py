"""DeepLab on your own folder of images and class-id label PNGs.

  python main.py --config=configs/custom.py \
      --config.dataset.data_dir=/path/to/DIR --workdir=runs/mine

DIR holds `images/{train,val}/<stem>.jpg|png`, `labels/{train,val}/<stem>.png`
(one channel, pixel value = class id, 255 = ignore) and optionally
`classes.txt`, one class name per line, line i naming class id i.

`config.model.num_classes` is left unset: at startup
`datasets.resolve_num_classes(config)` takes it from the data (the number of
names in classes.txt, or, without that file, 1 + the largest class id in
labels/train) and logs which and why. A count given with
`--config.model.num_classes=N` that disagrees is refused; give it to predict
or export on a machine without DIR. When fine-tuning a checkpoint trained
with another number of classes, also pass
`--config.initialize_last_layer=False --config.last_layers_contain_logits_only=True`.

Check the folder before training: `--mode=check_data` lists every problem in
it (unreadable images, colour labels, bad ids, size mismatches, missing
labels, classes that never occur) with a fix for each.

The model is MobileNetV2 with the Dense Prediction Cell and the decoder at
output stride 4, an auxiliary head and residual branches that start as the
identity. The recipe below (those three, Adam, narrow scale augmentation,
batch-norm statistics recomputed before evaluations and checkpoints,
evaluation in windows of the training crop with flip and three scales) is
for short runs, from scratch or from a checkpoint (below); the README gives
both recipes with their measured mean IoU.
Evaluate and predict with the config and flags the run trained with: the
auxiliary head's variables are in its checkpoints, and the evaluation
windows are `train_crop_size` unless `--config.eval_crop_size` says
otherwise.

Fine-tuning (`--config.init_checkpoint=` a TF checkpoint prefix or another
run's workdir): the backbone is loaded, and of the head what the checkpoint
has in the same shape; the rest starts fresh, as in the original's training,
and the log names both. From a MobileNetV2 model-zoo checkpoint (ASPP
without atrous branches, no decoder) the cell, the decoder and the
auxiliary head start fresh; to keep its ASPP, add
`--config.model.dense_prediction_cell= --config.model.atrous_rates=()`. For
a long run with a large batch from a model-zoo checkpoint, the original's
recipe is also `--config.optimizer=momentum --config.learning_rate=0.007
--config.min_scale_factor=0.5 --config.max_scale_factor=2.0`.
`--config=configs/custom.py:tiny` gives a small local variant for CPU.
"""

import ml_collections
from ml_collections.config_dict import placeholder

from deeplab_jax import config_defaults


def get_config(arg=None):
  config = config_defaults.get_config()
  config.model.backbone = 'mobilenet_v2'
  config.model.output_stride = 16
  # The head: the Dense Prediction Cell (the original's Cityscapes cell) in
  # place of ASPP, with an auxiliary head on the backbone's features and every
  # residual branch starting as the identity. From scratch, the three together
  # beat ASPP by +0.03 to +0.22 mean IoU (mean +0.12) in five matched
  # 1,500-step runs on three held-out folders; each alone was within the
  # run-to-run spread (README, "Your own data").
  config.model.dense_prediction_cell = 'cityscapes'
  config.model.zero_init_residual = True
  config.auxiliary_loss_weight = 0.4
  # ASPP, where the cell is turned off (`--config.model.dense_prediction_cell=`):
  # its three atrous branches (the original's Xception/ResNet head; its
  # MobileNetV2 configs leave them out for speed) gave shapes told apart by form
  # their context: mean IoU 0.456 -> 0.588 on the folder the choices were made
  # on (seed 2), 0.406 -> 0.572 on one held out (seed 3).
  config.model.atrous_rates = (6, 12, 18)
  config.model.decoder_output_stride = 4
  # None: taken from the data at startup (see above).
  config.model.num_classes = ml_collections.FieldReference(None, field_type=int)
  config.dataset.name = 'custom'
  config.dataset.train_split = 'train'
  config.dataset.eval_split = 'val'
  config.dataset.ignore_label = 255

  # The recipe for a short run on a CPU, from scratch or from a checkpoint
  # (README, "Your own data", has its measured mean IoU). On the generated
  # shapes folders, 1,500 steps of batch 8 at crop 129 from scratch reach
  # 0.66-0.76 on three held-out folders (with ASPP: 0.41-0.65, and 0.68-0.81 at
  # 3,000 steps): on such data budget 3,000 steps or more. From random weights
  # in 1,500 steps, momentum SGD barely moves: a PyTorch DeepLabV3+ on a folder
  # of this kind reached mean IoU 0.25 with SGD at 0.01 and 0.76 with Adam at
  # 2e-3 (on seed 3's harder folder, the same peer with Adam at 2e-3: 0.23,
  # benchmarks/torch_custom_peer.py); Adam is the later original's other
  # optimizer, and the quickstart's.
  config.optimizer = 'adam'
  # Chosen on the generated folder of seed 2: after 600 steps mean IoU 0.18
  # at 1e-3, 0.22 at 2e-3, 0.24 at 5e-3; after 1,500 steps (with ASPP) 0.59 at
  # 5e-3 and 0.32 at 1e-2.
  config.learning_rate = 0.005
  # The original's scales 0.5-2.0 of small images in a 129 crop cut objects
  # into pieces or shrink them below the stride-16 features; the quickstart's
  # 0.75-1.25 keep them whole. For photos much larger than the crop, widen it.
  config.min_scale_factor = 0.75
  config.max_scale_factor = 1.25
  # The moving averages lag a short run's drifting statistics (evaluation then
  # sees one class): recompute them over 50 training batches before each
  # evaluation and checkpoint.
  config.precise_batch_norm_batches = 50
  # Evaluate on the image, its mirror and two rescales, averaging the class
  # scores (the original's best VOC results do this too): +0.039 mean IoU on
  # seed 2's folder (0.588 -> 0.627), +0.041 on seed 3's, for about 4x the
  # evaluation time.
  config.eval_flip = True
  config.eval_scales = (0.75, 1.0, 1.25)
  # Evaluate (and predict) with windows of the training crop slid over each
  # image, not the whole image padded to one large canvas. At crop 129 the
  # features are 9x9: the cell's taps at rates 15-21 see only padding in
  # training, while on a 513x513 canvas they reach features they never saw.
  # Seed 5's model: mean IoU 0.609 on the canvas, 0.755 in windows (crosses
  # 0.07 -> 0.49); on its own training images 0.570 -> 0.757.
  config.eval_mode = 'slide'
  config.eval_crop_size = placeholder(tuple)  # None: the training crop.
  # With --config.eval_mode=whole, six passes over 513x513 canvases peaked at
  # 7.8 GB of host memory at 8 images per batch, 4.6 GB at 4 (as fast).
  config.eval_batch_size = 4
  return config_defaults.apply_variant(config, arg)
