"""The canvas sizes and the traced-size resizes onto and off it (canvas.py).

Each traced-size resize is compared with resize.py's static TF-exact one.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from deeplab_jax import canvas
from deeplab_jax.resize import resize_bilinear, resize_nearest

CROP = 129


# --- Size helpers ------------------------------------------------------------------

@pytest.mark.parametrize('size, stride, expected', [
    (1, 16, 1), (17, 16, 17), (18, 16, 33), (97, 16, 97), (120, 16, 129), (500, 8, 505)])
def test_valid_size(size, stride, expected):
  assert canvas.valid_size(size, stride) == expected


@pytest.mark.parametrize('image_hw, long_side, expected', [
    ((97, 120), None, (97, 120)),     # Fits: kept.
    ((129, 129), None, (129, 129)),
    ((97, 130), None, (96, 129)),     # Too wide by one: shrunk, width exactly the crop.
    ((300, 200), None, (129, 86)),
    ((1, 1000), None, (1, 129)),      # Never below one pixel.
    ((60, 80), 120, (90, 120)),       # Long side made 120 (enlarged).
    ((80, 60), 120, (120, 90)),
    ((400, 300), 100, (100, 75)),
    ((300, 200), 400, (129, 86)),     # Never beyond the crop.
])
def test_fitted_size(image_hw, long_side, expected):
  fitted = canvas.fitted_size(image_hw, (CROP, CROP), long_side)
  assert tuple(int(d) for d in fitted) == expected


@pytest.mark.parametrize('image_hw, fitted, canvas_hw', [
    ((5, 7), (9, 13), (17, 17)),   # Enlarged.
    ((9, 13), (5, 4), (9, 9)),     # Shrunk.
    ((6, 6), (6, 6), (9, 8)),      # Padded only.
    ((1, 4), (3, 1), (3, 2)),      # Single rows and columns.
])
def test_place_on_canvas_is_the_tf_resize_then_mean_padding(image_hw, fitted, canvas_hw):
  images = np.random.RandomState(0).randint(0, 256, (2, *image_hw, 3)).astype(np.uint8)
  placed = canvas.place_on_canvas(jnp.asarray(images), jnp.asarray(fitted), canvas_hw)
  expected = np.full((2, *canvas_hw, 3), 127.5, np.float32)
  expected[:, :fitted[0], :fitted[1]] = resize_bilinear(jnp.asarray(images, jnp.float32), fitted)
  np.testing.assert_allclose(np.asarray(placed), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize('fitted, image_hw', [((5, 4), (9, 13)), ((9, 13), (4, 7)),
                                              ((6, 6), (6, 6)), ((1, 3), (4, 1))])
def test_back_to_image_size_is_the_tf_nearest_resize_of_the_fitted_region(fitted, image_hw):
  labels = np.random.RandomState(1).randint(0, 21, (2, 11, 14)).astype(np.int32)
  mapped = canvas.back_to_image_size(jnp.asarray(labels), jnp.asarray(fitted), image_hw)
  expected = resize_nearest(jnp.asarray(labels[:, :fitted[0], :fitted[1]]), image_hw)
  np.testing.assert_array_equal(np.asarray(mapped), np.asarray(expected))

