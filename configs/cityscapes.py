"""What every Cityscapes setup shares: 19 train ids, 769x769 training crops and
whole 1025x2049 images at evaluation, 90k steps (cityscapes.md).

Where a whole 1025x2049 image does not fit the accelerator's memory (output
stride 8, large backbones), evaluate at full resolution with sliding windows
instead: --config.eval_mode=slide --config.eval_crop_size=769,769 (or 513,513)
--config.eval_slide_stride=513,513 (mmsegmentation's slide mode; scores differ
slightly from the whole-image recipe, as image pooling then sees a window).
"""


def set_cityscapes(config):
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
