"""`deeplab_synthetic`: a small generated segmentation task for the quickstart.

Shapes (disc, square, triangle, ring, bar) on a shaded, noisy, muted
background. Every object's colour is drawn from one distribution, whatever
its class, so colour says nothing about the class: a model has to recognise
the *shape*. (Irregular distractor patches of object colours made
the task too hard to learn from scratch in the quickstart's CPU budget.)
Objects have random sizes, positions and rotations and may occlude each other.

Everything is a pure function of (seed, split, index), so the dataset is the
same wherever it is generated; nothing is downloaded. Importing this module
registers the TFDS builder:

  import deeplab_jax.data.synthetic  # registers 'deeplab_synthetic'
  builder = tfds.builder('deeplab_synthetic', data_dir=...)
  builder.download_and_prepare()
"""

import dataclasses
from typing import Dict, List, Tuple
import zlib

import numpy as np
import tensorflow_datasets as tfds

CLASS_NAMES = ('background', 'disc', 'square', 'triangle', 'ring', 'bar')
NUM_CLASSES = len(CLASS_NAMES)
IGNORE_LABEL = 255
# Colours for visualising labels (class id -> RGB).
COLORMAP = ((0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25),
            (0, 130, 200), (245, 130, 48))

_DISC, _SQUARE, _TRIANGLE, _RING, _BAR = range(1, NUM_CLASSES)
# Object radii in pixels: large enough that stride-16 features see the shape.
_MIN_RADIUS, _MAX_RADIUS = 16.0, 36.0
# Objects must differ from the background colour by this much (RGB distance),
# or a shape could vanish into its background.
_MIN_CONTRAST = 80.0


@dataclasses.dataclass(frozen=True)
class Shape:
  """One object: its class and where and how it is drawn."""
  class_id: int
  center: Tuple[float, float]  # (y, x) in pixels.
  radius: float
  angle: float  # Rotation in radians (squares, triangles, bars).
  aspect: float  # Ring: inner / outer radius. Bar: half-width / radius.
  color: Tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class Scene:
  """Everything needed to render one example deterministically."""
  height: int
  width: int
  background_color: Tuple[float, float, float]
  shapes: Tuple[Shape, ...]
  noise_seed: int


def _split_code(split: str) -> int:
  return zlib.crc32(split.encode('utf-8'))


def _random_color(rng: np.random.Generator, avoid=None) -> Tuple[float, ...]:
  while True:
    color = rng.uniform(0, 255, 3)
    if avoid is None or np.linalg.norm(color - np.asarray(avoid)) >= _MIN_CONTRAST:
      return tuple(float(c) for c in color)


def _background_color(rng: np.random.Generator) -> Tuple[float, ...]:
  # Muted (greyish, mid-level) backgrounds: with fully random ones each batch
  # of 8 images had its own mean colour, and batch norm's batch statistics
  # drifted so far from the moving averages that evaluation saw background only.
  grey = rng.uniform(80, 176)
  return tuple(float(grey + t) for t in rng.uniform(-20, 20, 3))


def sample_scene(rng: np.random.Generator, *, min_size: int = 128,
                 max_size: int = 160) -> Scene:
  """Draws an image size, a background and 2-5 objects."""
  height, width = (int(s) for s in rng.integers(min_size, max_size + 1, 2))
  background = _background_color(rng)
  shapes = []
  for _ in range(rng.integers(2, 6)):
    class_id = int(rng.integers(1, NUM_CLASSES))
    radius = float(rng.uniform(_MIN_RADIUS, _MAX_RADIUS))
    center = (float(rng.uniform(0.1, 0.9) * height),
              float(rng.uniform(0.1, 0.9) * width))
    if class_id == _RING:
      aspect = float(rng.uniform(0.4, 0.6))
    elif class_id == _BAR:
      aspect = float(rng.uniform(0.22, 0.32))
    else:
      aspect = 1.0
    shapes.append(Shape(class_id=class_id, center=center, radius=radius,
                        angle=float(rng.uniform(0, 2 * np.pi)), aspect=aspect,
                        color=_random_color(rng, avoid=background)))
  return Scene(height=height, width=width, background_color=background,
               shapes=tuple(shapes),
               noise_seed=int(rng.integers(0, 2**31)))


def shape_mask(shape: Shape, height: int, width: int) -> np.ndarray:
  """The pixels (bool [H, W]) that `shape` covers; pixel centres at integers."""
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
  dy, dx = ys - shape.center[0], xs - shape.center[1]
  # Coordinates in the shape's own rotated frame.
  cos, sin = np.cos(shape.angle), np.sin(shape.angle)
  u, v = cos * dx + sin * dy, -sin * dx + cos * dy
  r = shape.radius
  if shape.class_id == _DISC:
    return dx**2 + dy**2 <= r**2
  if shape.class_id == _SQUARE:
    half = 0.85 * r  # About the disc's area.
    return (np.abs(u) <= half) & (np.abs(v) <= half)
  if shape.class_id == _TRIANGLE:
    # Equilateral: inside all three edges at distance inradius from the centre.
    circumradius = 1.2 * r
    inradius = circumradius / 2
    inside = np.ones((height, width), bool)
    for k in range(3):
      normal = shape.angle + 2 * np.pi * k / 3
      inside &= np.cos(normal) * dx + np.sin(normal) * dy <= inradius
    return inside
  if shape.class_id == _RING:
    distance2 = dx**2 + dy**2
    return (distance2 <= r**2) & (distance2 >= (shape.aspect * r)**2)
  if shape.class_id == _BAR:
    return (np.abs(u) <= 1.4 * r) & (np.abs(v) <= shape.aspect * r)
  raise ValueError(f'Unknown shape class {shape.class_id}.')


def _smooth_noise(rng: np.random.Generator, height: int, width: int,
                  cells: int) -> np.ndarray:
  """Noise in [0, 1) that varies over about `cells` cells per side."""
  grid = rng.uniform(0, 1, (cells + 1, cells + 1))
  rows = np.linspace(0, cells, height)
  cols = np.linspace(0, cells, width)
  along_cols = np.stack([np.interp(cols, np.arange(cells + 1), g) for g in grid])
  return np.stack([np.interp(rows, np.arange(cells + 1), c)
                   for c in along_cols.T], axis=1)


def render_scene(scene: Scene) -> Tuple[np.ndarray, np.ndarray]:
  """The image (uint8 [H, W, 3]) and label (uint8 [H, W, 1]) of a scene."""
  rng = np.random.default_rng(scene.noise_seed)
  height, width = scene.height, scene.width
  image = np.empty((height, width, 3), np.float32)
  image[:] = scene.background_color
  # Low-frequency shading per channel.
  for channel in range(3):
    image[..., channel] += rng.uniform(10, 40) * (
        _smooth_noise(rng, height, width, 4) - 0.5)
  label = np.zeros((height, width), np.uint8)
  ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
  for shape in scene.shapes:
    mask = shape_mask(shape, height, width)
    # A gentle linear shading across the object.
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * (xs - shape.center[1]) +
            np.sin(direction) * (ys - shape.center[0])) / shape.radius
    shade = rng.uniform(0, 20) * ramp
    image[mask] = np.asarray(shape.color) + shade[mask][:, np.newaxis]
    label[mask] = shape.class_id
  image += rng.normal(0, rng.uniform(2, 8), image.shape).astype(np.float32)
  image = np.clip(np.round(image), 0, 255).astype(np.uint8)
  return image, label[..., np.newaxis]


def generate_example(seed: int, split: str, index: int, *,
                     min_size: int = 128, max_size: int = 160) -> Dict:
  """Example `index` of `split`: {'image', 'label', 'name'} as numpy / str."""
  rng = np.random.default_rng([seed, _split_code(split), index])
  scene = sample_scene(rng, min_size=min_size, max_size=max_size)
  image, label = render_scene(scene)
  return {'image': image, 'label': label, 'name': f'{split}_{index:05d}'}


@dataclasses.dataclass(eq=False)
class DeeplabSyntheticConfig(tfds.core.BuilderConfig):
  """Sizes and seed of a generated `deeplab_synthetic` variant."""
  seed: int = 0
  num_train: int = 1000
  num_validation: int = 100
  min_size: int = 128
  max_size: int = 160


class DeeplabSynthetic(tfds.core.GeneratorBasedBuilder):
  """Shapes told apart by form, not colour: a minutes-on-a-CPU segmentation task."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Five shape classes on textured backgrounds.'}
  BUILDER_CONFIGS = [
      DeeplabSyntheticConfig(
          name='default', description='1000 train / 100 validation images.'),
      DeeplabSyntheticConfig(
          name='tiny', num_train=32, num_validation=8,
          description='A few images, for smoke tests.'),
  ]

  def _info(self):
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(None, None, 3),
                                         encoding_format='png'),
            'label': tfds.features.Image(shape=(None, None, 1),
                                         encoding_format='png'),
            'name': tfds.features.Text(),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    config = self.builder_config
    if config.min_size < 8 or config.min_size > config.max_size:
      raise ValueError(f'deeplab_synthetic/{config.name}: need 8 <= min_size '
                       f'<= max_size, got {config.min_size}, {config.max_size}.')
    return {
        'train': self._generate_examples('train', config.num_train),
        'validation': self._generate_examples('validation',
                                              config.num_validation),
    }

  def _generate_examples(self, split: str, num_examples: int):
    config = self.builder_config
    for index in range(num_examples):
      example = generate_example(config.seed, split, index,
                                 min_size=config.min_size,
                                 max_size=config.max_size)
      yield example['name'], example


def split_scenes(seed: int, split: str, num_examples: int, *,
                 min_size: int = 128, max_size: int = 160) -> List[Scene]:
  """The scenes behind a split's examples (for inspection and tests)."""
  return [sample_scene(np.random.default_rng([seed, _split_code(split), i]),
                       min_size=min_size, max_size=max_size)
          for i in range(num_examples)]
