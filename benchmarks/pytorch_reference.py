r"""The PyTorch figure our README compares with, measured on your machine.

segmentation_models_pytorch's DeepLabV3+ (random weights), eager mode,
PyTorch's default thread count; one JSON line like ours. MobileNetV2 by
default (`--encoder=tu-xception65` for Xception-65 through timm). Output
stride 16 by default, smp's default for DeepLabV3+ and our MobileNetV2
configs' (8 triples the work: 14.0 instead of 4.7 GFLOP per 320x320 forward).

  pip install torch segmentation-models-pytorch   # Not in requirements.txt.
  python benchmarks/pytorch_reference.py --mode=train --batch_size=4 --crop_size=320
  python benchmarks/pytorch_reference.py --mode=inference --batch_size=1 --crop_size=512
  python benchmarks/pytorch_reference.py --device=cuda --dtype=bfloat16 --channels_last \
      --encoder=tu-xception65 --batch_size=16 --crop_size=512

Training is timed as `train_step.py` times ours: the mean over windows of
back-to-back steps (SGD with momentum and weight decay, cross-entropy with an
ignore label), the best window reported beside the median. Inference is the
minimum of single calls, as `inference.py`. On CUDA: cuDNN picks its fastest
algorithms (`cudnn.benchmark`, paid for in `warmup_seconds`, PyTorch's
counterpart of our compile time), float32 matmuls and convs use TF32 as XLA's
default precision does, and bfloat16 is `torch.autocast`.
"""

import argparse
import json
import os
import resource
import time

import segmentation_models_pytorch as smp
import torch


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--mode', choices=('train', 'inference'), default='train')
  parser.add_argument('--encoder', default='mobilenet_v2',
                      help='smp encoder name, e.g. mobilenet_v2 or tu-xception65.')
  parser.add_argument('--device', default='cpu', help='cpu or cuda.')
  parser.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32')
  parser.add_argument('--batch_size', type=int, default=4)
  parser.add_argument('--crop_size', type=int, default=320)
  parser.add_argument('--steps', type=int, default=8, help='Steps per window (train).')
  parser.add_argument('--repeats', type=int, default=10, help='Timed calls (inference).')
  parser.add_argument('--output_stride', type=int, choices=(8, 16), default=16)
  parser.add_argument('--channels_last', action='store_true')
  args = parser.parse_args()

  device = torch.device(args.device)
  cuda = device.type == 'cuda'
  if cuda:
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

  def sync():
    if cuda:
      torch.cuda.synchronize()

  torch.manual_seed(0)
  start = time.perf_counter()
  model = smp.DeepLabV3Plus(encoder_name=args.encoder, encoder_weights=None, classes=21,
                            encoder_output_stride=args.output_stride).to(device)
  shape = (args.batch_size, 3, args.crop_size, args.crop_size)
  images = torch.rand(shape, device=device) * 255
  if args.channels_last:
    model = model.to(memory_format=torch.channels_last)
    images = images.contiguous(memory_format=torch.channels_last)
  labels = torch.randint(0, 21, (args.batch_size, args.crop_size, args.crop_size), device=device)
  labels[:, :8] = 255  # Some ignored pixels, as ours.
  sync()
  init_seconds = time.perf_counter() - start
  autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=args.dtype == 'bfloat16')

  if args.mode == 'train':
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.007, momentum=0.9, weight_decay=4e-5)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)

    def call():
      optimizer.zero_grad(set_to_none=True)
      with autocast:
        loss = loss_fn(model(images).float(), labels)
      loss.backward()
      optimizer.step()

    start = time.perf_counter()
    for _ in range(3):
      call()
    sync()
    warmup_seconds = time.perf_counter() - start
    seconds = []
    for _ in range(3):
      start = time.perf_counter()
      for _ in range(args.steps):
        call()
      sync()
      seconds.append((time.perf_counter() - start) / args.steps)
  else:
    model.eval()

    def call():
      with torch.inference_mode(), autocast:
        model(images).argmax(1)

    start = time.perf_counter()
    for _ in range(2):
      call()
    sync()
    warmup_seconds = time.perf_counter() - start
    seconds = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      call()
      sync()
      seconds.append(time.perf_counter() - start)

  seconds.sort()
  if cuda:
    peak = dict(peak_memory_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                peak_memory_of='device', device_kind=torch.cuda.get_device_name(device))
  else:
    peak = dict(peak_memory_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                peak_memory_of='host_rss', device_kind='cpu')
  print(json.dumps(dict(
      benchmark=f'pytorch_{args.mode}', model=f'smp DeepLabV3Plus {args.encoder}',
      encoder=args.encoder, device=args.device, dtype=args.dtype,
      batch_size=args.batch_size, crop_size=args.crop_size, output_stride=args.output_stride,
      channels_last=args.channels_last,
      seconds_per_call=round(seconds[0], 5),
      seconds_per_image=round(seconds[0] / args.batch_size, 5),
      images_per_second=round(args.batch_size / seconds[0], 2),
      median_seconds_per_image=round(seconds[len(seconds) // 2] / args.batch_size, 5),
      state_init_seconds=round(init_seconds, 2), warmup_seconds=round(warmup_seconds, 2),
      **peak, threads=torch.get_num_threads(), torch=torch.__version__,
      load_average_1min=round(os.getloadavg()[0], 2))), flush=True)


if __name__ == '__main__':
  main()
