"""Heads that turn backbone features into 256-channel segmentation features:
ASPP, the Dense Prediction Cell and the DeepLabv3+ decoder."""

from deeplab_jax.layers import BatchNormSettings


def head_batch_norm(axis_name=None) -> BatchNormSettings:
  """ASPP, decoder and DPC all use decay 0.9997 and epsilon 1e-5."""
  return BatchNormSettings(decay=0.9997, epsilon=1e-5, axis_name=axis_name)
