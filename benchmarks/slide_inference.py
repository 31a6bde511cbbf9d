"""Seconds per image of whole-image vs sliding-window prediction (the Predictor, CPU).

  PYTHONPATH=.:tests python benchmarks/slide_inference.py [--height=1024 --width=2048 --crop=513]

Whole shrinks the image to fit the crop (one window's work); slide covers it at
full resolution with windows two thirds of a crop apart: its cost grows with
the number of windows. Random weights: only the time is meaningful.
"""

import argparse
import os
import time

import numpy as np

from deeplab_jax import config_defaults
from deeplab_jax import canvas, predictor, scoring
from export_test import natural_image, random_variables  # tests/ must be on PYTHONPATH.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--height', type=int, default=1024)
  parser.add_argument('--width', type=int, default=2048)
  parser.add_argument('--crop', type=int, default=513)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  config = config_defaults.load_config(os.path.join(REPO, 'configs', 'voc_mnv2.py'))
  config.eval_crop_size = (args.crop, args.crop)
  variables = random_variables(config)
  image = natural_image(args.height, args.width)
  times = {}
  for mode in ('whole', 'slide'):
    config.eval_mode = mode
    model = predictor.Predictor.from_variables(config, variables, check=False)
    model.predict(image)  # Compiles.
    runs = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      model.predict(image)
      runs.append(time.perf_counter() - start)
    times[mode] = float(np.median(runs))
  stride = canvas.slide_stride(config)
  windows = [int(scoring.num_windows(size, args.crop, s))
             for size, s in zip((args.height, args.width), stride)]
  print(f'{args.height}x{args.width}, crop {args.crop}, stride {stride}: '
        f'{windows[0]}x{windows[1]} windows')
  print(f'whole (shrunk to the crop): {times["whole"]:.3f} s   slide (full size): '
        f'{times["slide"]:.3f} s   ratio {times["slide"] / times["whole"]:.1f}x')


if __name__ == '__main__':
  main()
