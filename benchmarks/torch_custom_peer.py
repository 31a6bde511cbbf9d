r"""The PyTorch peer of `custom_recipe.py`: smp DeepLabV3+ on a generated shapes folder.

  python benchmarks/torch_custom_peer.py --data_dir=/tmp/shapes3 \
      [--lr=2e-3 --schedule=constant --steps=1500 --batch=8 --crop=128]

Trains segmentation_models_pytorch's DeepLabV3+ (MobileNetV2, output stride
16, random weights) on `images/train` + `labels/train` of a custom-layout
folder (`make_shapes_folder.py`) and prints one JSON line with the mean IoU on
`labels/val`, as `custom_recipe.py` does for ours. Augmentation is ours: a
random scale from min_scale..max_scale in steps of 0.25, a crop padded with
the mean pixel (label: ignore), a random mirror. Evaluation is on the whole
image, padded to a multiple of 16. It needs torch, torchvision and
segmentation_models_pytorch, kept out of requirements.txt: on this project's
CPU machines `pip install torch==2.14.1 torchvision==0.29.1
segmentation_models_pytorch==0.6.0` in a separate virtual environment.
"""

import argparse
import glob
import json
import os
import time

import numpy as np
from PIL import Image
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

IGNORE = 255


def load_split(data_dir, split):
  images, labels = [], []
  for path in sorted(glob.glob(os.path.join(data_dir, 'labels', split, '*.png'))):
    stem = os.path.splitext(os.path.basename(path))[0]
    image_path = glob.glob(os.path.join(data_dir, 'images', split, stem + '.*'))[0]
    images.append(np.asarray(Image.open(image_path).convert('RGB'), np.float32) / 127.5 - 1)
    labels.append(np.asarray(Image.open(path), np.int64))
  return images, labels


def random_crop(rng, image, label, crop, scales):
  scale = rng.choice(scales)
  height, width = (max(1, int(round(s * scale))) for s in label.shape)
  image_t = torch.from_numpy(image).permute(2, 0, 1)[None]
  image = F.interpolate(image_t, (height, width), mode='bilinear', align_corners=True)[0]
  label_t = torch.from_numpy(label)[None, None].float()
  label = F.interpolate(label_t, (height, width), mode='nearest')[0, 0].long()
  pad_h, pad_w = max(crop - height, 0), max(crop - width, 0)
  image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)  # 0 = the mean pixel after scaling.
  label = F.pad(label, (0, pad_w, 0, pad_h), value=IGNORE)
  top = rng.integers(image.shape[1] - crop + 1)
  left = rng.integers(image.shape[2] - crop + 1)
  image, label = image[:, top:top + crop, left:left + crop], label[top:top + crop, left:left + crop]
  if rng.random() < 0.5:
    image, label = image.flip(-1), label.flip(-1)
  return image, label


def mean_iou(model, images, labels, num_classes):
  confusion = np.zeros((num_classes, num_classes), np.int64)
  model.eval()
  with torch.inference_mode():
    for image, label in zip(images, labels):
      height, width = label.shape
      x = torch.from_numpy(image).permute(2, 0, 1)[None]
      x = F.pad(x, (0, -width % 16, 0, -height % 16))
      prediction = model(x)[0, :, :height, :width].argmax(0).numpy()
      valid = label != IGNORE
      confusion += np.bincount(num_classes * label[valid] + prediction[valid],
                               minlength=num_classes**2).reshape(num_classes, num_classes)
  true_positive = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - true_positive
  iou = np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)
  return float(np.nanmean(iou)), [round(float(v), 4) for v in iou]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data_dir', required=True)
  parser.add_argument('--steps', type=int, default=1500)
  parser.add_argument('--batch', type=int, default=8)
  # smp takes sizes divisible by 16: 128 where ours crops 129 (16k + 1).
  parser.add_argument('--crop', type=int, default=128)
  parser.add_argument('--lr', type=float, default=2e-3)
  parser.add_argument('--schedule', choices=('constant', 'poly'), default='constant')
  parser.add_argument('--min_scale', type=float, default=0.75)
  parser.add_argument('--max_scale', type=float, default=1.25)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--threads', type=int, default=2)
  args = parser.parse_args()
  torch.manual_seed(args.seed)
  torch.set_num_threads(args.threads)
  rng = np.random.default_rng(args.seed)
  with open(os.path.join(args.data_dir, 'classes.txt')) as f:
    num_classes = len([line for line in f if line.strip()])
  train_images, train_labels = load_split(args.data_dir, 'train')
  val_images, val_labels = load_split(args.data_dir, 'val')
  scales = np.arange(args.min_scale, args.max_scale + 1e-6, 0.25)

  model = smp.DeepLabV3Plus(encoder_name='mobilenet_v2', encoder_weights=None,
                            classes=num_classes, encoder_output_stride=16)
  optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
  power = 0.9 if args.schedule == 'poly' else 0.0
  scheduler = torch.optim.lr_scheduler.LambdaLR(
      optimizer, lambda step: (1 - step / args.steps)**power)
  start = time.perf_counter()
  order = []
  for step in range(args.steps):
    model.train()
    if len(order) < args.batch:
      order.extend(rng.permutation(len(train_images)))
    picked, order = order[:args.batch], order[args.batch:]
    pairs = [random_crop(rng, train_images[i], train_labels[i], args.crop, scales) for i in picked]
    x = torch.stack([p[0] for p in pairs])
    y = torch.stack([p[1] for p in pairs])
    loss = F.cross_entropy(model(x), y, ignore_index=IGNORE)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    if step % 100 == 0 or step == args.steps - 1:
      print(f'step {step} loss {loss.item():.4f} {time.perf_counter() - start:.0f}s', flush=True)
  train_seconds = time.perf_counter() - start
  miou, per_class = mean_iou(model, val_images, val_labels, num_classes)
  print(json.dumps({'side': 'torch_smp', 'data_dir': args.data_dir, 'lr': args.lr,
                    'schedule': args.schedule, 'steps': args.steps, 'mean_iou': round(miou, 4),
                    'per_class_iou': per_class, 'train_seconds': round(train_seconds)}))


if __name__ == '__main__':
  main()
