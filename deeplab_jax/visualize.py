"""Host-side pictures of segmentations: label PNGs, overlays, comparison panels,
and the evaluation's pictures a person reads without the code (titled panels
with a class legend, a confusion matrix, a per-class IoU chart).

Label maps are written as palette PNGs: the stored pixel values are the class
ids (machine-readable, like the original's raw predictions) and the palette is
the dataset colormap (viewable, like its colour-mapped predictions), so one
file serves both purposes.

Text is PIL's default bitmap font (no font files, no matplotlib), magnified
by whole pixels on large pictures so it stays readable.
"""

import os
from typing import Dict, Optional, Sequence

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from deeplab_jax import colormaps


def _label_map(labels, name: str = 'labels') -> np.ndarray:
  labels = np.asarray(labels)
  if labels.ndim == 3 and labels.shape[-1] == 1:
    labels = labels[..., 0]
  if labels.ndim != 2:
    raise ValueError(f'{name} must be [H, W] or [H, W, 1], got shape {labels.shape}.')
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{name} must be integer class ids, got dtype {labels.dtype}.')
  return labels


def _rgb_image(image) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f'image must be uint8, got dtype {image.dtype}.')
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f'image must be [H, W], [H, W, 1] or [H, W, 3], got shape {image.shape}.')
  return np.broadcast_to(image, image.shape[:2] + (3,))


def save_label_png(path: str, labels, colormap_name: str) -> None:
  """Writes class ids [H, W] as a palette PNG coloured by `colormap_name`."""
  labels = _label_map(labels)
  colormap = colormaps.get_colormap(colormap_name)
  if labels.size and (labels.min() < 0 or labels.max() >= len(colormap)):
    raise ValueError(f'Cannot write {path}: labels range over [{labels.min()}, {labels.max()}] '
                     f'but the {colormap_name!r} colormap has {len(colormap)} entries.')
  palette = np.zeros((256, 3), np.uint8)
  palette[:len(colormap)] = colormap
  # uint8 [H, W] is an 'L' image; converting L to P keeps every value as the index.
  picture = Image.fromarray(labels.astype(np.uint8)).convert('P')
  picture.putpalette(palette.reshape(-1).tolist())
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  picture.save(path, format='PNG')


def read_label_png(path: str) -> np.ndarray:
  """Class ids uint8 [H, W] of a palette ('P') or grayscale ('L') PNG."""
  with Image.open(path) as picture:
    if picture.mode not in ('P', 'L'):
      raise ValueError(f'{path} is a {picture.mode!r} image; label PNGs must be palette (P) '
                       'or grayscale (L) images whose pixel values are class ids.')
    return np.array(picture, np.uint8)


def overlay(image_uint8, labels, colormap_name: str, alpha: float = 0.5,
            ignore_label: int = 255) -> np.ndarray:
  """The image with label colours blended in at `alpha`; ignored pixels untouched.

  Args:
    image_uint8: [H, W, 3] (or grayscale [H, W] / [H, W, 1]) uint8.
    labels: [H, W] or [H, W, 1] class ids.
    colormap_name: see `colormaps.get_colormap`.
    alpha: weight of the label colour, in [0, 1].
    ignore_label: pixels with this label keep the image's colour.

  Returns:
    uint8 [H, W, 3].
  """
  image = _rgb_image(image_uint8)
  labels = _label_map(labels)
  if image.shape[:2] != labels.shape:
    raise ValueError(f'image {image.shape[:2]} and labels {labels.shape} differ in size.')
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f'alpha must be in [0, 1], got {alpha}.')
  ignored = labels == ignore_label
  colors = colormaps.colorize(np.where(ignored, 0, labels), colormap_name).astype(np.float32)
  blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
  blended = np.clip(np.round(blended), 0, 255).astype(np.uint8)
  return np.where(ignored[..., None], image, blended)


def comparison_panel(image, ground_truth, prediction, colormap_name: str, alpha: float = 0.5,
                     ignore_label: int = 255) -> np.ndarray:
  """uint8 [H, 3W, 3]: image | ground-truth overlay | prediction overlay."""
  image = _rgb_image(image)
  return np.concatenate([
      image,
      overlay(image, ground_truth, colormap_name, alpha, ignore_label),
      overlay(image, prediction, colormap_name, alpha, ignore_label),
  ], axis=1)


# --- Evaluation pictures -----------------------------------------------------------

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (200, 200, 200)
_GAP = 4  # Pixels between a swatch and its name, and around text.


def text_picture(text: str, scale: int = 1, color=BLACK, background=WHITE) -> np.ndarray:
  """uint8 [h, w, 3]: `text` in the bitmap font, each font pixel `scale` wide."""
  font = ImageFont.load_default_imagefont()
  left, top, right, bottom = font.getbbox(text or ' ')
  picture = Image.new('RGB', (max(right, 1), max(bottom, 1) + 1), background)
  ImageDraw.Draw(picture).text((0, 0), text, fill=color, font=font)
  if scale > 1:
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
  return np.asarray(picture)


def _pad_to(picture: np.ndarray, height: int, width: int, background=WHITE) -> np.ndarray:
  out = np.empty((height, width, 3), np.uint8)
  out[...] = background
  out[:picture.shape[0], :picture.shape[1]] = picture
  return out


def _column(pictures, background=WHITE) -> np.ndarray:
  width = max(p.shape[1] for p in pictures)
  return np.concatenate([_pad_to(p, p.shape[0], width, background) for p in pictures])


def _row(pictures, background=WHITE) -> np.ndarray:
  height = max(p.shape[0] for p in pictures)
  return np.concatenate([_pad_to(p, height, p.shape[1], background) for p in pictures], axis=1)


def _with_margin(picture: np.ndarray, margin: int = _GAP) -> np.ndarray:
  return _pad_to(np.pad(picture, ((margin, 0), (margin, 0), (0, 0)), constant_values=255),
                 picture.shape[0] + 2 * margin, picture.shape[1] + 2 * margin)


def _space(size: int) -> np.ndarray:
  """White [size, size, 3]: a gap in a row or a column."""
  return np.full((size, size, 3), 255, np.uint8)


def text_scale(width: int) -> int:
  """Font magnification for a picture `width` pixels wide (1 up to 800 px)."""
  return max(1, int(width) // 800 + 1)


def legend(classes: Sequence[int], class_names: Sequence[str], colormap_name: str,
           width: int, scale: int = 1) -> np.ndarray:
  """uint8 [h, width, 3]: a colour swatch and 'id name' per class, in rows."""
  colors = colormaps.get_colormap(colormap_name)
  entries = []
  for c in classes:
    name = text_picture(f'{c} {class_names[c]}', scale)
    swatch = np.empty((name.shape[0], name.shape[0], 3), np.uint8)
    swatch[...] = colors[c]
    entries.append(_row([swatch, np.full((name.shape[0], _GAP * scale, 3), 255, np.uint8),
                         name]))
  if not entries:
    return _with_margin(text_picture('(no classes)', scale))
  cell = max(e.shape[1] for e in entries) + 4 * _GAP * scale
  per_row = max(1, (width - 2 * _GAP) // cell)
  rows = [_row([_pad_to(e, e.shape[0], cell) for e in entries[i:i + per_row]])
          for i in range(0, len(entries), per_row)]
  spaced = []
  for r in rows:
    spaced += [r, _space(_GAP * scale)]
  block = _with_margin(_column(spaced))
  return _pad_to(block, block.shape[0], max(width, block.shape[1]))


def titled_comparison(image, ground_truth, prediction, colormap_name: str,
                      class_names: Sequence[str], *, title: str = '', alpha: float = 0.5,
                      ignore_label: int = 255) -> np.ndarray:
  """uint8: the image, the ground-truth overlay and the prediction overlay side
  by side under the headings 'Image', 'Ground truth', 'Prediction', an optional
  title line above, and a legend of the classes in either below."""
  image = _rgb_image(image)
  panels = {'Image': image,
            'Ground truth': overlay(image, ground_truth, colormap_name, alpha, ignore_label),
            'Prediction': overlay(image, prediction, colormap_name, alpha, ignore_label)}
  scale = text_scale(3 * image.shape[1])
  columns = []
  for heading, panel in panels.items():
    columns += [_column([_with_margin(text_picture(heading, scale)), panel]), _space(1)]
  body = _row(columns[:-1])
  present = np.union1d(np.unique(_label_map(ground_truth)), np.unique(_label_map(prediction)))
  present = [int(c) for c in present if c != ignore_label and 0 <= c < len(class_names)]
  parts = [body, legend(present, class_names, colormap_name, body.shape[1], scale)]
  if title:
    parts.insert(0, _with_margin(text_picture(title, scale)))
  return _column(parts)


def _cell_color(fraction: float):
  """White (0) to dark blue (1)."""
  return tuple(int(round(255 - (255 - d) * fraction)) for d in (8, 48, 107))


def confusion_matrix_picture(confusion, class_names: Sequence[str],
                             title: str = 'Confusion matrix') -> np.ndarray:
  """uint8: rows are true classes, columns predictions, each row normalised to
  sum 1 (the fraction of a class's pixels given each label); a grey row is a
  class absent from the ground truth. Fractions are written in cells of 30
  classes or fewer."""
  confusion = np.asarray(confusion, np.float64)
  num_classes = confusion.shape[0]
  if confusion.shape != (num_classes, num_classes) or len(class_names) != num_classes:
    raise ValueError(f'confusion {confusion.shape} must be [C, C] for {len(class_names)} '
                     'class names.')
  totals = confusion.sum(1, keepdims=True)
  fractions = confusion / np.maximum(totals, 1)
  with_numbers = num_classes <= 30
  cell = 30 if with_numbers else 10
  grid = Image.new('RGB', (num_classes * cell + 1, num_classes * cell + 1), WHITE)
  draw = ImageDraw.Draw(grid)
  font = ImageFont.load_default_imagefont()
  for t in range(num_classes):
    for p in range(num_classes):
      value = fractions[t, p]
      color = _cell_color(value) if totals[t, 0] else GREY
      box = (p * cell, t * cell, (p + 1) * cell, (t + 1) * cell)
      draw.rectangle(box, fill=color, outline=GREY)
      if with_numbers and totals[t, 0] and value >= 0.005:
        text = f'{value:.2f}'[1:] if value < 1 else '1.0'  # '.42': fits the cell.
        ink = WHITE if value > 0.5 else BLACK
        left, _, right, _ = font.getbbox(text)
        draw.text((box[0] + (cell - right) // 2, box[1] + (cell - 11) // 2), text, fill=ink,
                  font=font)
  names = [text_picture(f' {n} ') for n in class_names]
  name_width = max(n.shape[1] for n in names)
  # Row names right-aligned against the grid, each centred on its row.
  row_names = _column([_pad_to(np.pad(n, (((cell - n.shape[0]) // 2, 0),
                                          (name_width - n.shape[1], 0), (0, 0)),
                                      constant_values=255), cell, name_width) for n in names])
  # Column names read bottom to top, each centred above its column.
  column_names = np.rot90(_column([
      _pad_to(np.pad(n, (((cell - n.shape[0]) // 2, 0), (0, 0), (0, 0)), constant_values=255),
              cell, name_width) for n in names]))
  corner = np.full((column_names.shape[0], row_names.shape[1], 3), 255, np.uint8)
  body = _column([_row([corner, column_names]), _row([row_names, np.asarray(grid)])])
  axis_note = text_picture('rows: true class (each row sums to 1)   columns: predicted class')
  return _with_margin(_column([text_picture(title), _space(_GAP), axis_note, _space(2 * _GAP),
                               body]))


def iou_chart(per_class_iou: Dict[str, Optional[float]], mean_iou: float,
              title: str = 'Per-class IoU') -> np.ndarray:
  """uint8: one row per class, 'name  0.812' and a bar of that length; 'n/a'
  for a class neither present nor predicted."""
  bar_width, row_height = 200, 14
  names = list(per_class_iou) + ['mean IoU']
  values = list(per_class_iou.values()) + [mean_iou]
  name_width = max(text_picture(n).shape[1] for n in names) + 2 * _GAP
  rows = []
  for name, value in zip(names, values):
    label = _pad_to(text_picture(name), row_height, name_width)
    number = _pad_to(text_picture('n/a' if value is None else f'{value:.3f}'), row_height, 40)
    bar = np.full((row_height, bar_width, 3), 255, np.uint8)
    bar[row_height // 2 - 4:row_height // 2 + 4, :] = 235
    if value is not None:
      bar[row_height // 2 - 4:row_height // 2 + 4, :int(round(value * bar_width))] = (
          _cell_color(0.8) if name != 'mean IoU' else (180, 60, 20))
    rows.append(_row([label, number, bar]))
  return _with_margin(_column([text_picture(title), _space(2 * _GAP)] + rows))
