"""Evaluation: mean IoU over a split, as the original's eval.py, data-parallel.

Each step predicts the labels of one global batch (single scale, or several
scales + flip from `config.eval_scales` / `config.eval_flip`) under
`shard_map` and psums one [C, C] confusion matrix; the host adds them up in
int64 and computes the metrics once over the whole split. Padding examples
(mask False) and ignored pixels are left out.

With `config.eval_mode='slide'` every image is padded to one canvas that holds
the split's largest image (a whole number of strides beyond the crop), and
crop-sized windows slide over each image's own size, passed along as values:
batches of differently sized images share one compiled step, and each image
gets the windows it would get alone.
"""

import dataclasses
import json
import os
import time
from typing import Any, Dict, List, Optional

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from deeplab_jax import canvas
from deeplab_jax import checkpointing
from deeplab_jax import config_checks
from deeplab_jax import metrics
from deeplab_jax import parallel
from deeplab_jax import scoring
from deeplab_jax import variables as variables_lib
from deeplab_jax.model import create_model

RESULTS_FILE = 'eval_results.json'
IMAGES_SUBDIR = 'eval_images'
_DEVICE_KEYS = ('image', 'label', 'mask', 'height', 'width')


def with_padding(images, heights, widths, pad_pixel):
  """float32 images whose pixels beyond each example's height × width are `pad_pixel`.

  Batches arrive as uint8, where the padding value (127.5 for most backbones)
  was rounded; this restores it exactly, as the original pads."""
  rows = jnp.arange(images.shape[1])[None, :, None]
  columns = jnp.arange(images.shape[2])[None, None, :]
  inside = (rows < heights[:, None, None]) & (columns < widths[:, None, None])
  return jnp.where(inside[..., None], images.astype(jnp.float32),
                   jnp.asarray(pad_pixel, jnp.float32))


def create_eval_step(config: ml_collections.ConfigDict, mesh: Mesh):
  """`eval_step(variables, batch) -> (confusion [C, C] int32, predictions [B, H, W] int32)`.

  batch: `create_eval_dataset`'s `image`, `label`, `mask`, `height`, `width`
  (in slide mode each image's size is its height and width).
  """
  from deeplab_jax.data import preprocessing  # pylint: disable=g-import-not-at-top
  model = create_model(config)
  scales, flip = tuple(float(s) for s in config.eval_scales), bool(config.eval_flip)
  num_classes = config.model.num_classes
  ignore_label = int(config.dataset.ignore_label)
  crop = tuple(int(c) for c in config.eval_crop_size)
  stride = canvas.slide_stride(config)
  pad_pixel = preprocessing.mean_pixel(config.model.backbone)

  def per_device_eval_step(variables, batch):
    images = with_padding(batch['image'], batch['height'], batch['width'], pad_pixel)
    if _slides(config):
      image_hw = jnp.stack([batch['height'], batch['width']], -1).astype(jnp.int32)
      predictions = scoring.slide_predict(model, variables, images, image_hw, crop, stride,
                                          scales, flip)
    else:
      predictions = scoring.predict_labels(model, variables, images, scales, flip)
    confusion = metrics.confusion_matrix(batch['label'].astype(jnp.int32), predictions,
                                         num_classes, ignore_label, mask=batch['mask'])
    return jax.lax.psum(confusion, parallel.DATA_AXIS), predictions

  return jax.jit(jax.shard_map(per_device_eval_step, mesh=mesh,
                               in_specs=(P(), P(parallel.DATA_AXIS)),
                               out_specs=(P(), P(parallel.DATA_AXIS))))


def _slides(config) -> bool:
  return config.get('eval_mode', 'whole') == 'slide'


def slide_canvas_size(config, largest=None):
  """The (h, w) every evaluation image is padded to in slide mode: the bound of
  the split's images (`largest`, else the dataset registry's) after resizing,
  rounded up to a whole number of strides beyond the crop."""
  if largest is None:
    from deeplab_jax.data import datasets  # pylint: disable=g-import-not-at-top
    largest = datasets.largest_image_size(config.dataset, config.dataset.eval_split)
  what = f'{config.dataset.name} {config.dataset.eval_split}'
  config_checks.check_eval_crop_fits(config, largest, what)  # Names the fix if unbounded.
  bound = config_checks.resized_size_bound(config, largest)
  return canvas.slide_canvas_size(bound, config.eval_crop_size, canvas.slide_stride(config))


def _eval_source(config, source, num_examples=None):
  """(this host's source, examples per host or None) limited by num_eval_images.

  `num_examples` is the size of the whole split over all hosts: with several
  hosts it sets the common number of evaluation steps.
  """
  limit = config.get('num_eval_images')
  from deeplab_jax.data import datasets, input_pipeline  # pylint: disable=g-import-not-at-top
  if source is None:
    source = datasets.load_source(config.dataset, config.dataset.eval_split)
    num_examples = int(datasets.num_examples(config.dataset, config.dataset.eval_split))
  elif limit:
    source = source.take(int(limit))
  if num_examples is None:
    return source, None
  total = min(num_examples, int(limit)) if limit else num_examples
  return source, input_pipeline.eval_examples_per_host(total, jax.process_count())


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """What one evaluation computed; `write_evaluation` reports it."""
  results: Dict[str, Any]  # What eval_results.json holds.
  confusion: np.ndarray  # int64 [C, C]: labels (rows) × predictions (columns).
  samples: List[Dict[str, Any]]  # {'image', 'label', 'prediction', 'name'} to picture.
  class_names: List[str]
  colormap: str
  ignore_label: int


class Evaluator:
  """Mean IoU of variables on the eval split; built once per run, called per evaluation.

  Holds what every evaluation of a run shares: the eval step (jitted once, so
  it compiles at the first evaluation only), this host's examples, and the
  dataset's class names and colormap.
  """

  def __init__(self, config: ml_collections.ConfigDict, mesh: Optional[Mesh] = None, *,
               source=None, num_examples: Optional[int] = None, dataset_info=None):
    """source: this host's examples (default: `config.dataset`'s eval split);
    num_examples: the whole split's size (with several hosts);
    dataset_info: the `datasets.DatasetInfo` resolved at startup, if any."""
    from deeplab_jax.data import datasets  # pylint: disable=g-import-not-at-top
    self.config = config
    self.mesh = parallel.make_mesh() if mesh is None else mesh
    parallel.check_batch_size(config.eval_batch_size, self.mesh, 'eval_batch_size')
    self.eval_step = create_eval_step(config, self.mesh)
    self.colormap, names = datasets.output_facts(config, dataset_info)
    self.class_names = names or [str(i) for i in range(config.model.num_classes)]
    self._source, self._per_host = _eval_source(config, source, num_examples)
    self._data_config = config
    if _slides(config):  # The pipeline pads to its config's eval crop: make that the canvas.
      self._data_config = config.copy_and_resolve_references()
      self._data_config.eval_crop_size = slide_canvas_size(config)

  def __call__(self, variables, step: int) -> Evaluation:
    from deeplab_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top
    config = self.config
    data = input_pipeline.create_eval_dataset(
        self._data_config, self._source, process_index=jax.process_index(),
        process_count=jax.process_count(), num_examples_per_host=self._per_host)
    start = time.perf_counter()
    num_classes = config.model.num_classes
    confusion = np.zeros((num_classes, num_classes), np.int64)
    num_images = 0
    samples: List[Dict[str, Any]] = []
    wanted_samples = int(config.get('num_prediction_images') or 0)
    for batch, device_batch in parallel.prefetch_to_devices(data.as_numpy_iterator(), self.mesh,
                                                            _DEVICE_KEYS):
      step_confusion, predictions = self.eval_step(variables, device_batch)
      confusion += np.asarray(jax.device_get(step_confusion), np.int64)
      num_images += int(np.sum(batch['mask']))
      if len(samples) < wanted_samples:
        local = parallel.local_rows(predictions)
        for i in np.flatnonzero(batch['mask'])[:wanted_samples - len(samples)]:
          h, w = int(batch['height'][i]), int(batch['width'][i])
          samples.append({'image': batch['image'][i, :h, :w],
                          'label': batch['label'][i, :h, :w],
                          'prediction': local[i, :h, :w], 'name': batch['name'][i]})
    num_images = int(parallel.sum_over_processes([num_images])[0])
    if num_images == 0:
      raise ValueError(f'The evaluation split {config.dataset.eval_split!r} of '
                       f'{config.dataset.name!r} gave no examples.')

    result = metrics.segmentation_metrics(confusion, self.class_names)
    results = {
        'step': int(step),
        'mean_iou': result['mean_iou'],
        'pixel_accuracy': result['pixel_accuracy'],
        'per_class_iou': result['per_class_iou'],
        'num_images': num_images,
        'num_pixels': result['num_pixels'],
        'split': config.dataset.eval_split,
        'eval_scales': [float(s) for s in config.eval_scales],
        'eval_flip': bool(config.eval_flip),
        'eval_mode': config.get('eval_mode', 'whole'),
        'seconds': time.perf_counter() - start,
    }
    return Evaluation(results, confusion, samples, self.class_names, self.colormap,
                      int(config.dataset.ignore_label))


def write_evaluation(evaluation: Evaluation, workdir: str, writer=None) -> None:
  """Logs an evaluation and writes it: `<workdir>/eval_results.json`, and to
  `<workdir>/eval_images/` and `writer` comparison pictures (image | ground
  truth | prediction, with a legend of the classes in them), the confusion
  matrix and a per-class IoU chart (`writer` also gets the per-class table as
  text and the scores as scalars)."""
  from deeplab_jax import visualize  # pylint: disable=g-import-not-at-top
  results, confusion, class_names = evaluation.results, evaluation.confusion, evaluation.class_names
  step = results['step']
  logging.info('Evaluation at step %d on %d images: mean IoU %.4f, pixel accuracy %.4f.\n%s',
               step, results['num_images'], results['mean_iou'], results['pixel_accuracy'],
               per_class_table(confusion, class_names))
  warning = collapse_warning(confusion, class_names)
  if warning:
    logging.warning('%s', warning)

  pictures = _pictures(evaluation, visualize)
  if jax.process_index() == 0:
    _write_outputs(workdir, results, pictures)
  if writer is not None:
    scalars = {'eval/mean_iou': results['mean_iou'],
               'eval/pixel_accuracy': results['pixel_accuracy']}
    scalars.update({f'eval/iou/{name}': value
                    for name, value in results['per_class_iou'].items() if value is not None})
    writer.write_scalars(step, scalars)
    writer.write_images(step, {f'eval/{key}': picture[None]
                               for key, (_, picture) in pictures.items()})
    # Four spaces: a fixed-width block in TensorBoard's markdown.
    table = metrics.per_class_table(results['per_class_iou'], results['mean_iou'])
    writer.write_texts(step, {'eval/per_class_iou': '\n'.join(
        '    ' + line for line in table.splitlines())})
    writer.flush()


def evaluate(config: ml_collections.ConfigDict, workdir: str, variables, step: int, *,
             writer=None, mesh: Optional[Mesh] = None, source=None,
             num_examples: Optional[int] = None, dataset_info=None) -> Dict[str, Any]:
  """One evaluation of `variables` (see `Evaluator`), written (see
  `write_evaluation`); returns the results. A run that evaluates repeatedly
  builds one `Evaluator` instead."""
  evaluation = Evaluator(config, mesh, source=source, num_examples=num_examples,
                         dataset_info=dataset_info)(variables, step)
  write_evaluation(evaluation, workdir, writer)
  return evaluation.results


def per_class_table(confusion: np.ndarray, class_names: List[str]) -> str:
  """Each class's IoU and its share of the labelled and of the predicted pixels."""
  iou = metrics.segmentation_metrics(confusion, class_names)['per_class_iou']
  labelled, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
  total = max(int(confusion.sum()), 1)
  width = max(len('class'), *(len(name) for name in class_names))
  lines = [f'  {"class":<{width}}     IoU  labelled  predicted']
  for index, name in enumerate(class_names):
    value = '     -' if iou[name] is None else f'{iou[name]:6.3f}'
    lines.append(f'  {name:<{width}}  {value}  {100 * labelled[index] / total:7.2f}%  '
                 f'{100 * predicted[index] / total:8.2f}%')
  return '\n'.join(lines)


def collapse_warning(confusion: np.ndarray, class_names: List[str]) -> Optional[str]:
  """A warning when the predictions fall into one class while the labels hold several.

  Collapsed: one class takes >= 95% of the predicted pixels and every other
  class in the labels has under 1% of its pixels found.
  """
  labelled, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
  top = int(np.argmax(predicted))
  others = [c for c in np.flatnonzero(labelled) if c != top]
  share = predicted[top] / max(predicted.sum(), 1)
  if not others or share < 0.95 or any(confusion[c, c] >= 0.01 * labelled[c] for c in others):
    return None
  return (f'{100 * share:.1f}% of the pixels are predicted as {class_names[top]!r} and none of '
          f'the {len(others)} other classes in the labels is found: the model has collapsed to '
          'one class. Check the data with --mode=check_data (label ids, class balance) and see '
          '"Batch norm in short runs" in README.md (config.precise_batch_norm_batches).')


def _uint8(image: np.ndarray) -> np.ndarray:
  return np.clip(np.round(image), 0, 255).astype(np.uint8)  # Already uint8 from the pipeline.


def _pictures(evaluation: Evaluation, visualize):
  """{TensorBoard key: (file name, uint8 picture)} of one evaluation."""
  results, class_names = evaluation.results, evaluation.class_names
  step = results['step']
  pictures = {
      'confusion_matrix': (f'step{step:07d}_confusion_matrix.png',
                           visualize.confusion_matrix_picture(
                               evaluation.confusion, class_names,
                               f'Confusion matrix at step {step} ({results["split"]})')),
      'per_class_iou': (f'step{step:07d}_per_class_iou.png',
                        visualize.iou_chart(results['per_class_iou'], results['mean_iou'],
                                            f'Per-class IoU at step {step} ({results["split"]})')),
  }
  for i, sample in enumerate(evaluation.samples):
    name = sample['name'].decode() if isinstance(sample['name'], bytes) else str(sample['name'])
    stem = ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name) or f'example{i}'
    pictures[f'comparison_{i}'] = (f'step{step:07d}_{i:02d}_{stem}.png',
                                   visualize.titled_comparison(
                                       _uint8(sample['image']), sample['label'],
                                       sample['prediction'], evaluation.colormap, class_names,
                                       title=f'{name} at step {step}',
                                       ignore_label=evaluation.ignore_label))
  return pictures


def _write_outputs(workdir, results, pictures):
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, RESULTS_FILE)
  with open(path + '.tmp', 'w') as f:
    json.dump(results, f, indent=2)
  os.replace(path + '.tmp', path)  # Readers never see a half-written file.
  from PIL import Image  # pylint: disable=g-import-not-at-top
  directory = os.path.join(workdir, IMAGES_SUBDIR)
  os.makedirs(directory, exist_ok=True)
  for file_name, picture in pictures.values():
    Image.fromarray(picture).save(os.path.join(directory, file_name))


def evaluate_checkpoints(config: ml_collections.ConfigDict, workdir: str, *,
                         continuous: bool = False, poll_seconds: float = 30.0,
                         timeout_seconds: Optional[float] = None,
                         dataset_info=None) -> Optional[Dict[str, Any]]:
  """`--mode=eval`: evaluates the latest checkpoint, or follows a run (continuous).

  Continuous evaluation waits for each new checkpoint and stops after the one
  at `config.num_train_steps` (or after `timeout_seconds` without a new one).
  Returns the last results. `dataset_info`: as resolved at startup, if it was.
  """
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  template = variables_lib.abstract_variables(config, NamedSharding(mesh, P()))
  # Read-only: it may follow a training run that writes the same folder.
  manager = checkpointing.CheckpointManager(workdir, read_only=True)
  # Both made with the first checkpoint: a workdir without one stays untouched.
  evaluator, writer = None, None
  last_step, results, waited_since = None, None, time.monotonic()
  try:
    while True:
      latest = manager.latest_step()
      if latest is None and not continuous:
        raise FileNotFoundError(
            f'No checkpoint in {manager.directory}: train first (--mode=train) or convert a '
            'TF checkpoint (--mode=convert --tf_checkpoint=PREFIX) into this --workdir.')
      if latest is not None and latest != last_step:
        variables, step = manager.restore_variables(
            template, ema=bool(config.get('ema_decay')))
        if evaluator is None:
          evaluator = Evaluator(config, mesh, dataset_info=dataset_info)
          writer = metric_writers.create_default_writer(
              os.path.join(workdir, 'eval'), just_logging=jax.process_index() > 0)
        evaluation = evaluator(variables, step)
        write_evaluation(evaluation, workdir, writer)
        results = evaluation.results
        last_step, waited_since = step, time.monotonic()
        if not continuous or step >= config.num_train_steps:
          return results
      if timeout_seconds is not None and time.monotonic() - waited_since > timeout_seconds:
        logging.warning('No new checkpoint for %.0f s; stopping continuous evaluation.',
                        timeout_seconds)
        return results
      time.sleep(poll_seconds)
  finally:
    manager.close()
    if writer is not None:
      writer.close()
