r"""Trains `configs/custom.py` on a generated shapes folder; prints its mean IoU.

  python benchmarks/custom_recipe.py --seed=2 --workdir=/tmp/recipe \
      [-- --config.init_checkpoint=DIR ...]

Writes the folder of `make_shapes_folder.py --seed=S` (unless it is there),
runs `main.py --config=configs/custom.py` on it as a user would (1,500 steps,
batch 8, crop 129 unless the extra flags after `--` say otherwise; the class
count comes from classes.txt when main.py reads it, else pass
--config.model.num_classes=5), and prints one JSON line: mean IoU, per-class
IoU, pixel accuracy and the wall time. The main.py log is kept in the workdir.
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_FLAGS = ('--config.num_train_steps=1500', '--config.global_batch_size=8',
              '--config.train_crop_size=129,129')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--seed', type=int, required=True, help='of the generated folder')
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--data_dir', help='default: <workdir>/shapes<seed>')
  parser.add_argument('extra', nargs='*', help='main.py flags after --')
  args = parser.parse_args()
  data_dir = args.data_dir or os.path.join(args.workdir, f'shapes{args.seed}')
  if not os.path.isfile(os.path.join(data_dir, 'classes.txt')):
    subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', 'make_shapes_folder.py'),
                    f'--seed={args.seed}', f'--out={data_dir}'], check=True)
  run_dir = os.path.join(args.workdir, 'run')
  command = [sys.executable, os.path.join(REPO, 'main.py'),
             f'--config={os.path.join(REPO, "configs", "custom.py")}', f'--workdir={run_dir}',
             f'--config.dataset.data_dir={data_dir}', *USER_FLAGS, *args.extra]
  os.makedirs(args.workdir, exist_ok=True)
  start = time.perf_counter()
  with open(os.path.join(args.workdir, 'main.log'), 'w') as log:
    subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
  seconds = time.perf_counter() - start
  with open(os.path.join(run_dir, 'eval_results.json')) as f:
    results = json.load(f)
  print(json.dumps({'seed': args.seed, 'flags': [*USER_FLAGS, *args.extra],
                    'mean_iou': round(results['mean_iou'], 4),
                    'per_class_iou': {k: v if v is None else round(v, 4)
                                      for k, v in results['per_class_iou'].items()},
                    'pixel_accuracy': round(results['pixel_accuracy'], 4),
                    'wall_seconds': round(seconds)}))


if __name__ == '__main__':
  main()
