r"""The PyTorch figure our README compares with, measured on your machine.

segmentation_models_pytorch's MobileNetV2 DeepLabV3+ (random weights), eager
mode, float32, PyTorch's default thread count; one JSON line like ours.
Output stride 16 by default, smp's default for DeepLabV3+ and our MobileNetV2
configs' (8 triples the work: 14.0 instead of 4.7 GFLOP per 320x320 forward).

  pip install torch segmentation-models-pytorch   # Not in requirements.txt.
  python benchmarks/pytorch_reference.py --mode=train --batch_size=4 --crop_size=320
  python benchmarks/pytorch_reference.py --mode=inference --batch_size=1 --crop_size=512

Training is timed as `train_step.py` times ours: the mean over windows of
back-to-back steps (SGD with momentum and weight decay, cross-entropy with an
ignore label), the best window reported beside the median. Inference is the
minimum of single calls, as `inference.py`.
"""

import argparse
import json
import os
import time

import segmentation_models_pytorch as smp
import torch


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--mode', choices=('train', 'inference'), default='train')
  parser.add_argument('--batch_size', type=int, default=4)
  parser.add_argument('--crop_size', type=int, default=320)
  parser.add_argument('--steps', type=int, default=8, help='Steps per window (train).')
  parser.add_argument('--repeats', type=int, default=10, help='Timed calls (inference).')
  parser.add_argument('--output_stride', type=int, choices=(8, 16), default=16)
  parser.add_argument('--channels_last', action='store_true')
  args = parser.parse_args()

  torch.manual_seed(0)
  model = smp.DeepLabV3Plus(encoder_name='mobilenet_v2', encoder_weights=None, classes=21,
                            encoder_output_stride=args.output_stride)
  images = torch.rand(args.batch_size, 3, args.crop_size, args.crop_size) * 255
  if args.channels_last:
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
  labels = torch.randint(0, 21, (args.batch_size, args.crop_size, args.crop_size))

  if args.mode == 'train':
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.007, momentum=0.9, weight_decay=4e-5)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)

    def call():
      optimizer.zero_grad(set_to_none=True)
      loss_fn(model(images), labels).backward()
      optimizer.step()

    for _ in range(3):
      call()
    seconds = []
    for _ in range(3):
      start = time.perf_counter()
      for _ in range(args.steps):
        call()
      seconds.append((time.perf_counter() - start) / args.steps)
  else:
    model.eval()

    def call():
      with torch.inference_mode():
        model(images).argmax(1)

    for _ in range(2):
      call()
    seconds = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      call()
      seconds.append(time.perf_counter() - start)

  seconds.sort()
  print(json.dumps(dict(
      benchmark=f'pytorch_{args.mode}', model='smp DeepLabV3Plus mobilenet_v2',
      batch_size=args.batch_size, crop_size=args.crop_size, output_stride=args.output_stride,
      channels_last=args.channels_last,
      seconds_per_image=round(seconds[0] / args.batch_size, 5),
      median_seconds_per_image=round(seconds[len(seconds) // 2] / args.batch_size, 5),
      threads=torch.get_num_threads(), torch=torch.__version__,
      load_average_1min=round(os.getloadavg()[0], 2))), flush=True)


if __name__ == '__main__':
  main()
