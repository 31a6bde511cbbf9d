"""Colour label images: recognising a known palette, and converting to class ids.

Labels must hold class ids, yet annotation tools and dataset copies often give
colour masks (VOC's SegmentationClass PNGs saved as RGB, Cityscapes' *_color
files). The data check describes such a label with `diagnose`; a mask drawn
with a known palette converts exactly:

  colour_labels.convert_colour_label('labels/train/a.png', 'pascal')
"""

import shlex
from typing import Dict, Optional, Tuple

import numpy as np
from PIL import Image

from deeplab_jax import colormaps

# Palettes a colour label is matched against, in this order.
_KNOWN_PALETTES = ('pascal', 'cityscapes', 'ade20k')
_MAX_LISTED = 8  # Colours or values quoted in one message.


def _palette_ids(name: str) -> Dict[int, int]:
  """Packed 0xRRGGBB colour -> class id for one of the known palettes."""
  table = colormaps.get_colormap(name).astype(np.int64)
  ids = {}
  if name == 'cityscapes':
    table = table[:19]
    ids[0] = 255  # Black is void in Cityscapes colour masks.
  for class_id, (r, g, b) in enumerate(table):
    ids.setdefault(int(r) << 16 | int(g) << 8 | int(b), class_id)
  return ids


def _packed_colours(rgb: np.ndarray) -> np.ndarray:
  rgb = rgb.astype(np.int64)
  return rgb[..., 0] << 16 | rgb[..., 1] << 8 | rgb[..., 2]


def _matching_palette(colours: np.ndarray) -> Optional[str]:
  for name in _KNOWN_PALETTES:
    ids = _palette_ids(name)
    if all(int(c) in ids for c in colours):
      return name
  return None


def colour_mask_to_ids(rgb: np.ndarray, colormap: str) -> np.ndarray:
  """Class ids uint8 [H, W] of an RGB colour mask drawn with a known palette.

  `colormap` is 'pascal' (VOC's colours; its border colour (224, 224, 192)
  becomes the ignore label 255), 'cityscapes' (train-id colours; black
  becomes 255) or 'ade20k'. Colours outside the palette are an error.
  """
  palette = _palette_ids(colormap)
  packed = _packed_colours(np.asarray(rgb)[..., :3])
  colours, inverse = np.unique(packed, return_inverse=True)
  unknown = [int(c) for c in colours if int(c) not in palette]
  if unknown:
    shown = ', '.join(str(_unpack(c)) for c in unknown[:_MAX_LISTED])
    raise ValueError(f'Colours {shown} are not in the {colormap!r} palette.')
  lookup = np.array([palette[int(c)] for c in colours], np.uint8)
  return lookup[inverse].reshape(packed.shape)


def convert_colour_label(path: str, colormap: str = 'pascal',
                         output_path: Optional[str] = None) -> str:
  """Rewrites a colour label PNG as a one-channel PNG of class ids.

  Writes to `output_path`, by default over `path` itself; returns the path
  written.
  """
  with Image.open(path) as image:
    rgb = np.asarray(image.convert('RGB'))
  try:
    ids = colour_mask_to_ids(rgb, colormap)
  except ValueError as error:
    raise ValueError(f'{path}: {error}') from error
  output_path = output_path or path
  Image.fromarray(ids, mode='L').save(output_path)
  return output_path


def _unpack(colour: int) -> Tuple[int, int, int]:
  return (colour >> 16) & 255, (colour >> 8) & 255, colour & 255


def diagnose(path: str, ignore_label: int) -> Tuple[str, str]:
  """(what the colour label holds, how to turn it into class ids)."""
  with Image.open(path) as image:
    mode = image.mode
    if mode == '1':
      return ('a 1-bit black/white image, not class ids',
              'save it as a one-channel PNG of class ids, e.g. background 0 and '
              f'object 1: Image.fromarray((np.asarray(Image.open(p)) > 0)'
              '.astype(np.uint8)).save(p)')
    rgb = np.asarray(image.convert('RGB'))
  packed = _packed_colours(rgb)
  colours, counts = np.unique(packed, return_counts=True)
  if (np.all(rgb[..., 0] == rgb[..., 1]) and
      np.all(rgb[..., 1] == rgb[..., 2])):
    values = sorted({int(c) & 255 for c in colours})
    trap = ''
    if ignore_label in values and len(values) <= 2:
      trap = (f' Note that {ignore_label} is the ignore label: if it marks your '
              f'objects, map it to a class id (ids[ids == {ignore_label}] = 1).')
    return (f'an image of mode {mode} whose channels are all equal (grey '
            f'values {values[:_MAX_LISTED]})',
            'keep one channel, so its values are the class ids: '
            f'Image.open(p).convert("L").save(p).{trap}')
  palette = _matching_palette(colours)
  order = np.argsort(-counts)[:_MAX_LISTED]
  shown = ', '.join(f'{_unpack(int(colours[i]))}: {int(counts[i])} px'
                    for i in order)
  if palette is not None:
    ids = _palette_ids(palette)
    class_ids = sorted({ids[int(c)] for c in colours})
    return (f'a colour mask (mode {mode}); its colours are the {palette} '
            f'palette\'s for class ids {class_ids[:_MAX_LISTED]}',
            'convert to class ids (rewrites the file as a one-channel PNG): '
            'python -c \'import sys; from deeplab_jax.data import colour_labels; '
            f'colour_labels.convert_colour_label(sys.argv[1], "{palette}")\' '
            f'{shlex.quote(path)}')
  return (f'a colour image (mode {mode}) with {len(colours)} colours ({shown}) '
          'that match no known palette',
          'map each colour to its class id and save one channel, e.g. '
          'ids = np.zeros(rgb.shape[:2], np.uint8); '
          'ids[(rgb == (R, G, B)).all(-1)] = 1; ...; '
          'Image.fromarray(ids).save(p).')
