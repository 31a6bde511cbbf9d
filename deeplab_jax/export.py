"""Exports a trained model for serving (jax.export, TF SavedModel) and mobile (TFLite).

`export_model` writes into one directory:

  deeplab.jax_export  `jax.export` artifact of `predictor.make_predict_fn`:
                      uint8 images [N, H, W, 3] of any batch and size →
                      {'labels': int32 [N, H, W]} (+ 'probabilities' float32
                      [N, H, W, C]); lowered for cpu, tpu (and cuda).
  saved_model/        the same function through jax2tf; signature
                      'serving_default', input 'images', the same outputs.
  model.tflite        MobileNetV2 by default: uint8 [1, crop_h, crop_w, 3] →
                      'labels' int32 [1, crop_h, crop_w] on that canvas. The
                      caller fits the image into the crop (shrink if larger),
                      pads bottom/right with 127 or 128, and crops/resizes the
                      labels back (see export_info.json).
  export_info.json    inputs, outputs, crop, classes, colormap.

With `config.eval_mode='slide'` the jax.export and SavedModel artifacts slide
crop-sized windows over images of any size at full resolution (one compiled
loop; its trip count follows the input size); the TFLite model stays one
window, and its caller slides it (export_info.json says how).

Weights are constants of the jax.export and TFLite artifacts and variables of
the SavedModel. Batch norm is not folded.
"""

import json
import os
import shutil
from typing import Any, Dict, Optional, Sequence

from absl import logging
import jax
from jax import export as jax_export
import jax.numpy as jnp
import ml_collections
import numpy as np

from deeplab_jax import canvas
from deeplab_jax import config_defaults
from deeplab_jax import predictor
from deeplab_jax import variables as variables_lib
from deeplab_jax.export_files import EXPORT_FILE, INFO_FILE, SAVED_MODEL_DIR, TFLITE_FILE
from deeplab_jax.model import create_model

PLATFORMS = ('cpu', 'tpu', 'cuda')
INPUT_NAME = 'images'
FORMAT_VERSION = 1


def _lower_for_platforms(jitted, args_spec, platforms: Sequence[str]):
  """jax.export for `platforms`; CUDA is dropped with a warning if it cannot lower."""
  try:
    return jax_export.export(jitted, platforms=tuple(platforms))(*args_spec)
  except Exception as error:  # pylint: disable=broad-except  (lowering errors vary by backend)
    if 'cuda' not in platforms:
      raise
    fewer = tuple(p for p in platforms if p != 'cuda')
    logging.warning('Lowering for cuda failed (%s); exporting for %s only.', error, fewer)
    return jax_export.export(jitted, platforms=fewer)(*args_spec)


def _named_outputs(predict_fn, with_probabilities: bool):
  def fn(variables, images):
    if with_probabilities:
      labels, probabilities = predict_fn(variables, images)
      return {'labels': labels, 'probabilities': probabilities}
    return {'labels': predict_fn(variables, images)}
  return fn


def _write_jax_export(fn, variables, path: str, platforms: Sequence[str]):
  batch, height, width = jax_export.symbolic_shape('N, H, W')
  images = jax.ShapeDtypeStruct((batch, height, width, 3), jnp.uint8)
  exported = _lower_for_platforms(jax.jit(lambda x: fn(variables, x)), [images], platforms)
  with open(path, 'wb') as f:
    f.write(exported.serialize())
  return exported.platforms


def _write_saved_model(fn, variables, directory: str, platforms: Sequence[str]):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only export needs TF)
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  leaves, treedef = jax.tree.flatten(variables)
  module = tf.Module()
  # A flat list: Flax names contain '/', which TF's object graph keys dislike.
  module.weights = [tf.Variable(np.asarray(leaf), trainable=False) for leaf in leaves]
  tf_fn = jax2tf.convert(lambda weights, images: fn(jax.tree.unflatten(treedef, weights), images),
                         polymorphic_shapes=[None, '(N, H, W, 3)'], with_gradient=False,
                         native_serialization_platforms=tuple(platforms))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name=INPUT_NAME)],
               autograph=False)
  def serve(images):
    return tf_fn(module.weights, images)

  if os.path.isdir(directory):
    shutil.rmtree(directory)  # A stale variables/ folder would not match.
  tf.saved_model.save(module, directory, signatures={'serving_default': serve})


def canvas_labels_fn(config: ml_collections.ConfigDict):
  """`fn(variables, images)`: uint8 [N, crop_h, crop_w, 3] (already fitted and
  padded) → int32 labels [N, crop_h, crop_w]: the TFLite graph."""
  model = create_model(config)
  scales = tuple(float(s) for s in config.eval_scales)

  def fn(variables, images):
    return predictor.canvas_prediction(model, variables, images.astype(jnp.float32), scales,
                                       bool(config.eval_flip))
  return fn


def _write_tflite(config, variables, path: str):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  crop_h, crop_w = (int(c) for c in config.eval_crop_size)
  # Plain convolutions: TFLite maps those to its own kernels but rejects the
  # matmul form of a 1x1 conv (it fuses the reshapes into a rank-4 batch matmul).
  config = config.copy_and_resolve_references()
  config.model.depthwise_kernel = config.model.pointwise_kernel = 'conv'
  fn = canvas_labels_fn(config)
  # TFLite needs a static batch for the argmax, and static sizes throughout.
  tf_fn = jax2tf.convert(lambda images: {'labels': fn(variables, images)}, with_gradient=False,
                         native_serialization_platforms=('cpu',))
  concrete = tf.function(
      tf_fn, input_signature=[tf.TensorSpec([1, crop_h, crop_w, 3], tf.uint8, name=INPUT_NAME)],
      autograph=False).get_concrete_function()
  converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  with open(path, 'wb') as f:
    f.write(converter.convert())


def _tensor(dtype: str, shape) -> Dict[str, Any]:
  return {'dtype': dtype, 'shape': list(shape)}


def _export_info(config, *, resize_long_side, with_probabilities, platforms, tflite: bool,
                 step: Optional[int]) -> Dict[str, Any]:
  crop = [int(c) for c in config.eval_crop_size]
  num_classes = int(config.model.num_classes)
  from deeplab_jax.data import datasets  # pylint: disable=g-import-not-at-top  (TF; only here)
  colormap, class_names = datasets.output_facts(config)
  outputs = {'labels': _tensor('int32', ['N', 'H', 'W'])}
  if with_probabilities:
    outputs['probabilities'] = _tensor('float32', ['N', 'H', 'W', num_classes])
  serving_io = {'inputs': {INPUT_NAME: _tensor('uint8', ['N', 'H', 'W', 3])}, 'outputs': outputs}
  artifacts = {
      'jax_export': {'file': EXPORT_FILE, 'platforms': list(platforms), **serving_io},
      'saved_model': {'directory': SAVED_MODEL_DIR, 'signature': 'serving_default',
                      'platforms': list(platforms), **serving_io},
  }
  slide = config.get('eval_mode', 'whole') == 'slide'
  stride = list(canvas.slide_stride(config))
  if tflite:
    fit = (f'fit the RGB image into {crop[0]}x{crop[1]} (shrink, keeping the aspect ratio, if '
           'it is larger), pad it at the bottom and right with 127 or 128 (the model maps '
           '127.5 to 0) to exactly that size, run, then take the labels of the image region '
           'and resize them back (nearest) if the image was shrunk.')
    if slide:
      fit = (f'slide it: pad the RGB image bottom/right with 127 or 128 to at least '
             f'{crop[0]}x{crop[1]}, run windows of that size {stride[0]}x{stride[1]} apart '
             '(the last of each row and column ending at the image border) and keep, per '
             'pixel, one window\'s label (labels cannot be averaged as the other artifacts '
             'average scores, so results differ slightly where windows overlap).')
    artifacts['tflite'] = {
        'file': TFLITE_FILE,
        'inputs': {INPUT_NAME: _tensor('uint8', [1, *crop, 3])},
        'outputs': {'labels': _tensor('int32', [1, *crop])},
        'caller_must': fit,
    }
  return {
      'format': 'deeplab_jax export', 'format_version': FORMAT_VERSION,
      'jax_version': jax.__version__, 'step': step,
      'num_classes': num_classes, 'class_names': class_names, 'colormap': colormap,
      'dataset': str(config.dataset.name),
      'crop_size': crop, 'resize_long_side': resize_long_side, 'pad_to_crop': True,
      'mean_pixel': canvas.MEAN_PIXEL,
      'eval_scales': [float(s) for s in config.eval_scales], 'eval_flip': bool(config.eval_flip),
      'model': {'backbone': str(config.model.backbone),
                'output_stride': int(config.model.output_stride),
                'decoder_output_stride': config.model.decoder_output_stride},
      'eval_mode': 'slide' if slide else 'whole', 'slide_stride': stride if slide else None,
      'preprocessing': (
          'inside the jax_export and saved_model artifacts: windows of the crop size, '
          'slide_stride apart, cover the image at its own size (padded bottom/right with 127.5 '
          'to at least the crop) and their scores are averaged where they overlap' if slide else
          'inside the jax_export and saved_model artifacts: images larger than the crop are '
          'shrunk to fit it (or resized so the long side is resize_long_side), padded '
          'bottom/right with 127.5 to the crop, predicted, and the labels mapped back to the '
          'input size (nearest, align corners)'),
      'artifacts': artifacts,
  }


def export_model(config: ml_collections.ConfigDict, variables, output_dir: str, *,
                 resize_long_side: Optional[int] = None, with_probabilities: bool = False,
                 tflite: Optional[bool] = None, platforms: Sequence[str] = PLATFORMS,
                 step: Optional[int] = None) -> Dict[str, Any]:
  """Writes the artifacts above for `{'params', 'batch_stats'}`; returns export_info.

  resize_long_side: resize every image so its long side is this many pixels
    (never beyond the crop) before predicting; None keeps images that fit the
    crop as they are and shrinks larger ones to fit.
  with_probabilities: also output the class probabilities (jax_export and
    saved_model; the TFLite model always gives labels only).
  tflite: write model.tflite; None means for MobileNetV2 backbones only.
  platforms: of the jax_export and saved_model artifacts (cuda is dropped
    with a warning where it cannot be lowered).
  step: the checkpoint step, recorded in export_info.json.
  """
  config = config_defaults.resolve_eval_crop_size(config.copy_and_resolve_references())
  variables_lib.check_variables(config, variables)
  if tflite is None:
    tflite = str(config.model.backbone).startswith('mobilenet')
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise ValueError(f'--output {output_dir} exists and is not a directory.')
  os.makedirs(output_dir, exist_ok=True)
  # Host copies become constants of the artifacts.
  variables = jax.device_get(variables_lib.model_collections(variables))
  fn = _named_outputs(
      predictor.make_predict_fn(config, resize_long_side=resize_long_side,
                                with_probabilities=with_probabilities), with_probabilities)

  platforms = _write_jax_export(fn, variables, os.path.join(output_dir, EXPORT_FILE),
                                platforms)
  logging.info('Wrote %s for %s.', EXPORT_FILE, platforms)
  _write_saved_model(fn, variables, os.path.join(output_dir, SAVED_MODEL_DIR), platforms)
  logging.info('Wrote %s/.', SAVED_MODEL_DIR)
  if tflite:
    _write_tflite(config, variables, os.path.join(output_dir, TFLITE_FILE))
    logging.info('Wrote %s.', TFLITE_FILE)
  info = _export_info(config, resize_long_side=resize_long_side,
                      with_probabilities=with_probabilities, platforms=platforms,
                      tflite=tflite, step=step)
  with open(os.path.join(output_dir, INFO_FILE), 'w') as f:
    json.dump(info, f, indent=2)
  return info


def export_from_workdir(config: ml_collections.ConfigDict, workdir: str, output_dir: str, *,
                        step: Optional[int] = None, resize_long_side: Optional[int] = None,
                        with_probabilities: bool = False,
                        tflite: Optional[bool] = None) -> Dict[str, Any]:
  """`export_model` of the latest (or given) checkpoint in `<workdir>/checkpoints`."""
  variables, found_step = predictor.load_variables(config, workdir, step)
  logging.info('Exporting the checkpoint of step %d from %s to %s.', found_step, workdir,
               output_dir)
  return export_model(config, variables, output_dir, resize_long_side=resize_long_side,
                      with_probabilities=with_probabilities, tflite=tflite, step=found_step)
