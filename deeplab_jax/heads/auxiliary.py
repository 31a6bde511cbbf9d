"""The auxiliary head: deep supervision of the backbone's features.

PSPNet trains a second classifier on backbone features with its own loss term
(weight 0.4) so that the backbone gets a short gradient path; mmsegmentation
gives every DeepLabV3/V3+ config one (a 3×3 conv of 256 channels, batch norm,
ReLU, dropout 0.1 and a 1×1 classifier). Training only: inference, export and
checkpoint parity with the original do not see it unless it is enabled.
"""

import flax.linen as nn
import jax.numpy as jnp

from deeplab_jax.layers import BatchNormSettings, Conv2DWithBias, ConvBN, Kernels

DEPTH = 256
DROPOUT_RATE = 0.1


class AuxiliaryHead(nn.Module):
  """Logits at the backbone's output stride from its features."""
  num_classes: int
  bn: BatchNormSettings
  dtype: jnp.dtype = jnp.float32
  kernels: Kernels = Kernels()

  @nn.compact
  def __call__(self, features, *, train_bn: bool, train: bool):
    y = ConvBN(DEPTH, self.bn, kernel_size=3, dtype=self.dtype, kernels=self.kernels,
               name='conv')(features, train_bn)
    y = nn.Dropout(DROPOUT_RATE, deterministic=not train)(y)
    return Conv2DWithBias(self.num_classes, kernels=self.kernels, name='logits')(y)
