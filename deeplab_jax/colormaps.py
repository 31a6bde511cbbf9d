"""Colour palettes of the original DeepLab (PASCAL, Cityscapes, ADE20K).

Each palette is a uint8 [N, 3] RGB table indexed by class id. Colouring is a
plain table lookup, and, as in the original, a label beyond the table is an
error rather than a silent wrap-around (255 is fine for PASCAL and
Cityscapes, whose tables have 256 entries, but not for ADE20K's 151).
"""

import numpy as np

# Cityscapes train id -> RGB; ids 19..255 are black.
_CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

# Cityscapes train id -> official label id, for the evaluation server.
CITYSCAPES_TRAIN_ID_TO_LABEL_ID = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28,
                                   31, 32, 33)

# ADE20K class id (0 = "other") -> RGB.
_ADE20K_COLORS = (
    (0, 0, 0), (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3),
    (120, 120, 80), (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255),
    (235, 255, 7), (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140),
    (204, 255, 4), (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51),
    (11, 102, 255), (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92),
    (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8),
    (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20),
    (0, 163, 255), (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0),
    (255, 224, 0), (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255),
    (31, 0, 255), (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112),
    (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0), (0, 143, 255),
    (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0),
    (0, 255, 153), (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0),
    (255, 0, 20), (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204),
    (0, 255, 194), (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255),
    (0, 122, 255), (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0),
    (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92),
    (184, 0, 255), (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112), (92, 255, 0),
    (0, 224, 255), (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0),
    (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
    (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255),
    (20, 0, 255), (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255),
    (41, 255, 0), (173, 0, 255), (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184),
    (0, 92, 255), (184, 255, 0), (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0),
    (92, 0, 255),
)

# The original's dataset names, accepted as aliases.
_ALIASES = {'pascal_voc_seg': 'pascal'}


def _pascal_colormap() -> np.ndarray:
  """Spreads the bits of each index over the channels, high bits first."""
  colormap = np.zeros((256, 3), np.int64)
  index = np.arange(256)
  for shift in range(7, -1, -1):
    for channel in range(3):
      colormap[:, channel] |= ((index >> channel) & 1) << shift
    index = index >> 3
  return colormap.astype(np.uint8)


def _cityscapes_colormap() -> np.ndarray:
  colormap = np.zeros((256, 3), np.uint8)
  colormap[:len(_CITYSCAPES_COLORS)] = _CITYSCAPES_COLORS
  return colormap


def _ade20k_colormap() -> np.ndarray:
  return np.array(_ADE20K_COLORS, np.uint8)


_BUILDERS = {'pascal': _pascal_colormap, 'cityscapes': _cityscapes_colormap,
             'ade20k': _ade20k_colormap}


def colormap_names():
  """Names `get_colormap` accepts (aliases included)."""
  return sorted([*_BUILDERS, *_ALIASES])


def get_colormap(name: str) -> np.ndarray:
  """A fresh uint8 [N, 3] RGB table: 'pascal' (or 'pascal_voc_seg'), 'cityscapes', 'ade20k'."""
  builder = _BUILDERS.get(_ALIASES.get(name, name))
  if builder is None:
    raise ValueError(f'Unknown colormap {name!r}; expected one of {colormap_names()}.')
  return builder()


def colorize(labels, name: str) -> np.ndarray:
  """RGB uint8 [..., 3] image of integer class ids `labels` [...]."""
  colormap = get_colormap(name)
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integer class ids, got dtype {labels.dtype}.')
  if labels.size and (labels.min() < 0 or labels.max() >= len(colormap)):
    raise ValueError(f'labels range over [{labels.min()}, {labels.max()}] but the {name!r} '
                     f'colormap has {len(colormap)} entries (ids 0..{len(colormap) - 1}).')
  return colormap[labels]


def cityscapes_train_id_to_label_id(labels) -> np.ndarray:
  """Maps train ids 0..18 to official label ids (uint8); 255 stays 255.

  Any other value is an error: it is neither a train id nor the ignore label.
  """
  labels = np.asarray(labels)
  table = np.full((256,), -1, np.int64)
  table[:len(CITYSCAPES_TRAIN_ID_TO_LABEL_ID)] = CITYSCAPES_TRAIN_ID_TO_LABEL_ID
  table[255] = 255
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integer train ids, got dtype {labels.dtype}.')
  if labels.size:
    in_table = (labels >= 0) & (labels <= 255)
    bad = ~in_table | (table[np.where(in_table, labels, 0)] < 0)
    if bad.any():
      raise ValueError(f'Not Cityscapes train ids (0..18) or 255: {np.unique(labels[bad])[:10]}')
  return table[labels.astype(np.int64)].astype(np.uint8)
