"""Datasets and the input pipeline.

Contract between the parts of this package:
- `datasets.load_split(dataset_config, split, ...)` returns a `tf.data.Dataset` of
  dicts `{'image': uint8 [H, W, 3], 'label': uint8 [H, W, 1] (class ids, ignore
  label for void), 'name': tf.string}`, already restricted to this host's shard.
- `preprocessing` turns such examples into fixed-size crops exactly as the
  original DeepLab does; `input_pipeline` batches them for training and
  evaluation.
"""
