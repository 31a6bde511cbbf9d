"""Importing model-zoo TF checkpoints: fine-tuning options and mismatch reports."""

import numpy as np
import pytest
import tensorflow as tf
from flax import traverse_util

import deeplab_jax
from deeplab_jax import variables
from tests_util import write_tf_checkpoint
import config_files

voc_mnv2 = config_files.module('voc_mnv2')


def read_all(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


def flat(variables):
  return {'/'.join(k[1:]): v for k, v in traverse_util.flatten_dict(variables).items()}


def test_every_variable_is_copied_by_name(tf_checkpoint):
  prefix = tf_checkpoint('mnv2_voc_os16')
  imported = flat(deeplab_jax.import_tf_checkpoint(prefix, voc_mnv2.get_config()))
  original = read_all(prefix)
  assert set(imported) == set(original)
  for name, value in original.items():
    np.testing.assert_array_equal(imported[name], value, err_msg=name)


def test_fine_tuning_to_other_classes_leaves_out_the_logits(tf_checkpoint):
  prefix = tf_checkpoint('mnv2_voc_os16')
  config = voc_mnv2.get_config()
  config.model.num_classes = 5
  with pytest.raises(deeplab_jax.CheckpointMismatchError, match='logits/semantic/weights'):
    deeplab_jax.import_tf_checkpoint(prefix, config)
  imported = flat(deeplab_jax.import_tf_checkpoint(prefix, config, include_logits=False))
  original = read_all(prefix)
  assert imported['logits/semantic/weights'].shape == (1, 1, 256, 5)
  np.testing.assert_array_equal(imported['aspp0/weights'], original['aspp0/weights'])
  # What is left out starts from the fresh initialisation of `seed`, as in training.
  fresh = flat(variables.initial_variables(config, seed=3))
  left_out = flat(deeplab_jax.import_tf_checkpoint(prefix, config, include_logits=False, seed=3))
  np.testing.assert_array_equal(left_out['logits/semantic/weights'],
                                fresh['logits/semantic/weights'])
  assert np.std(fresh['logits/semantic/weights']) > 0


def test_imagenet_backbone_checkpoint_initialises_only_the_backbone(tf_checkpoint, tmp_path):
  original = read_all(tf_checkpoint('mnv2_voc_os16'))
  backbone = {n: v for n, v in original.items() if n.startswith('MobilenetV2/')}
  # What an ImageNet checkpoint also holds: a classifier and training state.
  extras = {'MobilenetV2/Logits/Conv2d_1c_1x1/weights': np.zeros((1, 1, 320, 1001), np.float32),
            'global_step': np.int64(500000)}
  prefix = write_tf_checkpoint(tmp_path / 'model.ckpt', {**backbone, **extras})
  imported = flat(deeplab_jax.import_tf_checkpoint(prefix, voc_mnv2.get_config()))
  for name, value in backbone.items():
    np.testing.assert_array_equal(imported[name], value, err_msg=name)
  assert not np.array_equal(imported['aspp0/weights'], original['aspp0/weights'])


def test_mismatch_lists_missing_unexpected_and_misshaped_variables(tf_checkpoint, tmp_path):
  original = read_all(tf_checkpoint('mnv2_voc_os16'))
  del original['aspp0/BatchNorm/gamma']
  original['aspp1_depthwise/depthwise_weights'] = np.zeros((3, 3, 320, 1), np.float32)
  original['logits/semantic/biases'] = np.zeros((19,), np.float32)
  prefix = write_tf_checkpoint(tmp_path / 'model.ckpt', original)
  with pytest.raises(deeplab_jax.CheckpointMismatchError) as error:
    deeplab_jax.import_tf_checkpoint(prefix, voc_mnv2.get_config())
  message = str(error.value)
  assert 'missing from the checkpoint (1):\n    aspp0/BatchNorm/gamma' in message
  assert 'unexpected in the checkpoint (1):\n    aspp1_depthwise/depthwise_weights' in message
  assert 'logits/semantic/biases: (19,) in the checkpoint, (21,) in the model' in message


def test_missing_checkpoint_names_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match='nothing-here.index'):
    deeplab_jax.import_tf_checkpoint(str(tmp_path / 'nothing-here'), voc_mnv2.get_config())


def test_training_from_a_model_zoo_checkpoint_loads_what_matches_and_starts_the_rest_fresh(
    tf_checkpoint):
  # configs/custom.py (the cell, a decoder, an auxiliary head) from a MobileNetV2
  # model-zoo checkpoint (ASPP without atrous branches, no decoder), 5 classes.
  prefix = tf_checkpoint('mnv2_voc_os16')
  original = read_all(prefix)
  config = config_files.module('custom').get_config()
  config.model.num_classes = 5
  with pytest.raises(deeplab_jax.CheckpointMismatchError, match='auxiliary/'):
    deeplab_jax.import_tf_checkpoint(prefix, config, include_logits=False)  # As conversion does.
  imported = flat(deeplab_jax.import_tf_checkpoint(
      prefix, config, include_logits=False, partial_head=True, seed=3))
  fresh = flat(variables.initial_variables(config, seed=3))
  assert set(imported) == set(fresh)
  backbone = [n for n in original if n.startswith('MobilenetV2/')]
  assert len(backbone) > 100
  for name in backbone:
    np.testing.assert_array_equal(imported[name], original[name], err_msg=name)
  started_fresh = (set(fresh) - set(original)) | {n for n in fresh if n.startswith('logits/')}
  assert {n.split('/')[0] for n in started_fresh} >= {'auxiliary', 'decoder', 'logits'}
  for name in started_fresh:
    np.testing.assert_array_equal(imported[name], fresh[name], err_msg=name)

  # What the checkpoint has in another shape is still refused: ASPP with three
  # atrous branches projects 5 branches, the checkpoint's 2.
  config.model.dense_prediction_cell = ''
  with pytest.raises(deeplab_jax.CheckpointMismatchError,
                     match=r'concat_projection/weights: \(1, 1, 512, 256\) in the checkpoint'):
    deeplab_jax.import_tf_checkpoint(prefix, config, include_logits=False, partial_head=True)
