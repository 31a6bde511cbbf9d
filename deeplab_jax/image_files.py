"""Image files read as the model sees them: upright, 8-bit RGB.

Every reader of a user's image files (the custom dataset's training and
evaluation, `--mode=predict`, `--mode=check_data`) comes through here, so all
of them see the same pixels:

- The EXIF orientation is applied: phones store photos sideways with a tag
  saying how to turn them, and a viewer (and so the annotator) shows them
  turned. Label PNGs that carry an orientation are turned too, so an image
  and its label stay aligned; `read_header` gives the size after turning.
- 16-bit grey (modes I;16*, and I as Pillow gives 16-bit data) is scaled by
  its bit depth to 0..255: `convert('RGB')` would clip it at 255, leaving a
  16-bit photo almost two-valued.
- Floating-point grey (F) in 0..1 or 0..255 is scaled to 0..255; palette,
  1-bit, grey+alpha, RGBA (alpha dropped, as TF's decoders do) and CMYK
  become RGB through Pillow.
- Anything that cannot be read this way raises `UnreadableImageError`, a
  `ValueError` whose message names the file.

Needs only Pillow and NumPy (predicting must not need TensorFlow).
"""

from typing import NamedTuple

import numpy as np
from PIL import Image

ORIENTATION_TAG = 0x0112  # EXIF Orientation: 1 upright, 2..8 flipped/turned.
# Orientation -> the transposition that makes the picture upright
# (as PIL.ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = (5, 6, 7, 8)
_PNG_EXIF_KEYS = ('exif', 'Raw profile type exif', 'XML:com.adobe.xmp')


class UnreadableImageError(ValueError):
  """A file that cannot be read as an image; `reason` says why."""

  def __init__(self, path: str, reason: str):
    super().__init__(f'{path}: cannot read this file as an image ({reason}).')
    self.path = path
    self.reason = reason


class ImageHeader(NamedTuple):
  width: int  # Upright, after the orientation.
  height: int
  mode: str  # Pillow's mode of the stored pixels ('RGB', 'L', 'I;16', ...).
  orientation: int  # The EXIF orientation applied; 1 when none.


class DecodedImage(NamedTuple):
  pixels: np.ndarray  # Upright; uint8 [H, W, 3] from read_image.
  mode: str  # The file's mode before conversion to RGB.
  orientation: int  # The EXIF orientation applied; 1 when none.


def is_16_bit(mode: str) -> bool:
  return mode.startswith('I;16') or mode == 'I'


def _orientation(image: Image.Image) -> int:
  """The EXIF orientation, read from the header without decoding pixels."""
  if image.format == 'PNG' and not any(k in image.info for k in _PNG_EXIF_KEYS):
    # Pillow's PNG getexif() decodes the whole file to look for an eXIf chunk
    # after the pixel data; writers put it before, where open() has read it.
    return 1
  orientation = image.getexif().get(ORIENTATION_TAG, 1)
  return orientation if orientation in _UPRIGHT else 1


def read_header(path: str) -> ImageHeader:
  """Size (upright), mode and orientation from the file's header alone."""
  try:
    with Image.open(path) as image:
      orientation = _orientation(image)
      width, height = image.size
      mode = image.mode
  except Exception as error:  # pylint: disable=broad-except  (Pillow raises many types)
    raise UnreadableImageError(path, str(error) or type(error).__name__) from error
  if orientation in _SWAPS_SIDES:
    width, height = height, width
  return ImageHeader(width, height, mode, orientation)


def _to_rgb(path: str, image: Image.Image) -> np.ndarray:
  mode = image.mode
  if is_16_bit(mode) or mode == 'F':
    values = np.asarray(image)
    if mode == 'F':
      if not np.all(np.isfinite(values)):
        raise UnreadableImageError(path, 'floating-point pixels that are not finite')
      top = 1.0 if values.size and values.max() <= 1 else 255.0
    else:
      top = 65535.0
    if values.size and (values.min() < 0 or values.max() > top):
      raise UnreadableImageError(
          path, f'mode {mode} pixels in {values.min()}..{values.max()}, outside '
          f'0..{top:g}; save it as 8- or 16-bit')
    grey = np.round(values.astype(np.float64) * (255.0 / top)).astype(np.uint8)
    return np.repeat(grey[..., np.newaxis], 3, axis=2)
  if mode != 'RGB':
    try:
      image = image.convert('RGB')
    except ValueError as error:
      raise UnreadableImageError(path, f'mode {mode} cannot be converted to RGB') from error
  return np.asarray(image, dtype=np.uint8)


def _decode(path: str, to_array) -> DecodedImage:
  """Decodes fully, turns upright, and makes the array inside the open file."""
  try:
    with Image.open(path) as image:
      orientation = _orientation(image)
      image.load()  # Decodes fully: truncated data fail here.
      mode = image.mode
      if orientation in _UPRIGHT:
        image = image.transpose(_UPRIGHT[orientation])
      return DecodedImage(to_array(path, image), mode, orientation)
  except UnreadableImageError:
    raise
  except Exception as error:  # pylint: disable=broad-except  (Pillow raises many types)
    raise UnreadableImageError(path, str(error) or type(error).__name__) from error


def read_image(path: str) -> DecodedImage:
  """The file's pixels as uint8 RGB [H, W, 3], upright, with what was applied."""
  return _decode(path, _to_rgb)


def read_rgb(path: str) -> np.ndarray:
  """uint8 RGB [H, W, 3] of an image file, upright; raises naming the file."""
  return read_image(path).pixels


def read_stored_values(path: str) -> DecodedImage:
  """The pixel values as stored (palette indices, not colours), upright.

  For label PNGs of class ids: [H, W] in the file's mode's dtype, or
  [H, W, C] for a colour file (which the caller refuses, seeing `mode`).
  """
  return _decode(path, lambda _, image: np.asarray(image))
