"""The JAX resize (resize.py) against TF1's align-corners resize, values and gradients.

The bilinear resize has a hand-written VJP (weighted gathers instead of the
scatter-add autodiff would give), so its gradient is checked against
TensorFlow's own gradient of `resize_bilinear(align_corners=True)`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from deeplab_jax import resize

SIZES = [
    ((5, 7), (17, 9)),  # Up on one axis, a little up on the other.
    ((20, 20), (80, 80)),  # Decoder: stride 16 to stride 4.
    ((33, 17), (9, 5)),  # Down.
    ((1, 1), (6, 6)),  # Image pooling: one pixel spread over the map.
    ((7, 5), (7, 13)),  # One axis unchanged.
    ((6, 6), (1, 1)),
]


def tf_resize(x, size):
  return tf.compat.v1.image.resize_bilinear(x, size, align_corners=True)


@pytest.mark.parametrize('in_hw, out_hw', SIZES)
def test_bilinear_values_and_gradient_equal_tf1(in_hw, out_hw):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, *in_hw, 3)).astype(np.float32)
  weights = rng.normal(size=(2, *out_hw, 3)).astype(np.float32)

  np.testing.assert_allclose(resize.resize_bilinear(jnp.asarray(x), out_hw),
                             tf_resize(x, out_hw), rtol=1e-5, atol=1e-5)

  grad = jax.grad(lambda v: jnp.sum(resize.resize_bilinear(v, out_hw) * weights))(x)
  tf_x = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(tf_x)
    loss = tf.reduce_sum(tf_resize(tf_x, out_hw) * weights)
  np.testing.assert_allclose(grad, tape.gradient(loss, tf_x), rtol=1e-5, atol=1e-5)


def test_bilinear_gradient_has_no_scatter():
  x = jnp.zeros((1, 20, 20, 2))
  hlo = jax.jit(jax.grad(lambda v: jnp.sum(resize.resize_bilinear(v, (80, 80))))).lower(
      x).as_text()
  assert 'scatter' not in hlo


def test_nearest_picks_round_half_away_from_zero():
  labels = jnp.arange(4, dtype=jnp.int32).reshape(1, 1, 4)
  np.testing.assert_array_equal(resize.resize_nearest(labels, (1, 7))[0, 0],
                                [0, 1, 1, 2, 2, 3, 3])
