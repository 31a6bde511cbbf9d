r"""Writes a held-out custom-layout folder of shapes told apart by form.

  python benchmarks/make_shapes_folder.py --seed=1 --out=/tmp/shapes1

DIR/images/{train,val}/<stem>.png, DIR/labels/{train,val}/<stem>.png (class
ids), DIR/classes.txt. Five
classes: background, star, cross, hexagon (rare: a quarter as often as each
other shape) and crescent. It is built to differ from the quickstart's
generated data (disc, square, triangle, ring, bar on flat muted backgrounds):
other shapes, a wider range of sizes, and textures (stripes, checks, noise) on
both objects and backgrounds, whose colours are drawn independently of the
class, so only the form tells the classes apart. Recipes are tuned on one seed
and reported on another (README, "Training on your own data").
"""

import argparse
import os

import numpy as np
from PIL import Image

CLASS_NAMES = ('background', 'star', 'cross', 'hexagon', 'crescent')
_STAR, _CROSS, _HEXAGON, _CRESCENT = range(1, 5)
# How often each shape is drawn, relative to the others: hexagons are rare.
_SHAPE_FREQUENCY = {_STAR: 1.0, _CROSS: 1.0, _HEXAGON: 0.25, _CRESCENT: 1.0}
_MIN_RADIUS, _MAX_RADIUS = 12.0, 40.0
_MIN_CONTRAST = 70.0  # RGB distance between an object's colour and the background's.
_IGNORE = 255


def _texture(rng, height, width):
  """A zero-mean pattern in about [-1, 1]: flat, stripes, checks or noise."""
  kind = rng.integers(4)
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
  if kind == 0:
    return np.zeros((height, width), np.float32)
  if kind == 1:
    angle, period = rng.uniform(0, np.pi), rng.uniform(4, 12)
    return np.sign(np.sin((np.cos(angle) * xs + np.sin(angle) * ys) * 2 * np.pi / period))
  if kind == 2:
    period = rng.uniform(4, 10)
    return np.where((np.floor(xs / period) + np.floor(ys / period)) % 2 == 0, 1.0, -1.0)
  return rng.uniform(-1, 1, (height, width)).astype(np.float32)


def _shape_mask(class_id, cy, cx, radius, angle, height, width):
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
  dy, dx = ys - cy, xs - cx
  u = np.cos(angle) * dx + np.sin(angle) * dy
  v = -np.sin(angle) * dx + np.cos(angle) * dy
  if class_id == _STAR:  # Five points; the radius oscillates with the polar angle.
    theta, rho = np.arctan2(v, u), np.hypot(u, v)
    edge = radius * (0.45 + 0.55 * np.abs(np.cos(2.5 * theta)) ** 1.5)
    return rho <= edge
  if class_id == _CROSS:  # A plus sign with arms a third of its width.
    arm = radius * 0.33
    return (((np.abs(u) <= radius) & (np.abs(v) <= arm)) |
            ((np.abs(v) <= radius) & (np.abs(u) <= arm)))
  if class_id == _HEXAGON:
    inside = np.ones((height, width), bool)
    for k in range(6):
      normal = angle + np.pi * k / 3
      inside &= np.cos(normal) * dx + np.sin(normal) * dy <= radius * 0.87
    return inside
  if class_id == _CRESCENT:  # A disc less an offset disc.
    return (u**2 + v**2 <= radius**2) & ((u - 0.5 * radius)**2 + v**2 > (0.85 * radius)**2)
  raise ValueError(class_id)


def _random_color(rng, avoid=None):
  while True:
    color = rng.uniform(0, 255, 3)
    if avoid is None or np.linalg.norm(color - avoid) >= _MIN_CONTRAST:
      return color


def render(rng):
  """(image uint8 [H, W, 3], label uint8 [H, W]) of one random scene."""
  height, width = (int(s) for s in rng.integers(112, 193, 2))
  background = rng.uniform(30, 225, 3)
  ramp = np.linspace(-1, 1, width)[None, :, None] * rng.uniform(-30, 30, 3)
  image = (background + ramp + 20 * _texture(rng, height, width)[..., None]
           ).astype(np.float32) * np.ones((height, width, 1), np.float32)
  label = np.zeros((height, width), np.uint8)
  classes = np.array(list(_SHAPE_FREQUENCY))
  probabilities = np.array(list(_SHAPE_FREQUENCY.values()))
  for _ in range(rng.integers(1, 5)):
    class_id = int(rng.choice(classes, p=probabilities / probabilities.sum()))
    radius = rng.uniform(_MIN_RADIUS, _MAX_RADIUS)
    cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
    mask = _shape_mask(class_id, cy, cx, radius, rng.uniform(0, 2 * np.pi), height, width)
    color = _random_color(rng, background)
    contrast = rng.uniform(10, 35)
    image[mask] = color + contrast * _texture(rng, height, width)[mask][:, None]
    label[mask] = class_id
  image += rng.normal(0, 6, image.shape)
  return np.clip(np.round(image), 0, 255).astype(np.uint8), label


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--seed', type=int, required=True)
  parser.add_argument('--out', required=True)
  parser.add_argument('--num_train', type=int, default=600)
  parser.add_argument('--num_val', type=int, default=120)
  args = parser.parse_args()
  rng = np.random.default_rng(args.seed)
  for split, count in (('train', args.num_train), ('val', args.num_val)):
    for sub in ('images', 'labels'):
      os.makedirs(os.path.join(args.out, sub, split), exist_ok=True)
    for i in range(count):
      image, label = render(rng)
      stem = f'{split}_{i:05d}'
      Image.fromarray(image).save(os.path.join(args.out, 'images', split, stem + '.png'))
      Image.fromarray(label, mode='L').save(os.path.join(args.out, 'labels', split, stem + '.png'))
  with open(os.path.join(args.out, 'classes.txt'), 'w') as f:
    f.write('\n'.join(CLASS_NAMES) + '\n')
  print(f'Wrote {args.num_train} train and {args.num_val} val images of {len(CLASS_NAMES)} '
        f'classes to {args.out}')


if __name__ == '__main__':
  main()
