"""Each exported artifact predicts what the in-process model predicts.

One MobileNetV2 model (the `voc_mnv2.py:tiny` config, crop 129) with random
weights is exported once per session (jax.export, SavedModel, TFLite), and
every artifact is compared with a reference built here from the project's
static TF-exact resizes and `scoring` on a hand-padded canvas.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import config_files
from deeplab_jax import checkpointing
from deeplab_jax import export
from deeplab_jax import predictor
from deeplab_jax import variables as variables_lib
from deeplab_jax.model import create_model
from deeplab_jax.resize import resize_bilinear, resize_nearest

voc_mnv2 = config_files.module('voc_mnv2')

CROP = 129


def natural_image(height, width, seed=0):
  """Smooth gradients, a disc and a little noise: varied, non-trivial labels."""
  rng = np.random.RandomState(seed)
  yy, xx = np.mgrid[:height, :width].astype(np.float32)
  disc = ((yy - height * 0.4) ** 2 + (xx - width * 0.6) ** 2) < (min(height, width) * 0.3) ** 2
  image = np.stack([(yy * 2.1) % 256, (xx * 3.3 + 40 * disc) % 256,
                    128 + 90 * np.sin(xx / 7.0) * np.cos(yy / 9.0)], axis=-1)
  return np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)


def random_variables(config, seed=0):
  """Variables with He-scaled random kernels and perturbed batch norm (no init compile)."""
  rng = np.random.RandomState(seed)

  def fill(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name in ('weights', 'depthwise_weights'):
      return rng.normal(0, np.sqrt(2.0 / np.prod(shape[:3])), shape).astype(np.float32)
    if name in ('gamma', 'moving_variance'):
      return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return rng.normal(0, 0.1, shape).astype(np.float32)  # beta, biases, moving_mean
  return jax.tree_util.tree_map_with_path(fill, variables_lib.abstract_variables(config))


def with_calibrated_logits(variables, logits, target_std=3.0):
  """The 1x1 logits layer changed so each class's logit over `logits`' image has
  mean 0 and standard deviation `target_std`: classes then vary over images."""
  logits = np.asarray(logits).reshape(-1, logits.shape[-1])
  scale = (target_std / logits.std(0)).astype(np.float32)
  layer = variables['params']['logits/semantic']
  params = dict(variables['params'])
  params['logits/semantic'] = {'weights': layer['weights'] * scale,
                               'biases': (layer['biases'] - logits.mean(0)) * scale}
  return {'params': params, 'batch_stats': variables['batch_stats']}


def reference(apply_fn, image):
  """(labels [H, W], probabilities [H, W, C], top-2 logit margin [H, W]) computed
  with the static resizes: fit into the crop, pad with 127.5, predict, map back.

  apply_fn: jitted images → logits of the model.
  """
  height, width = image.shape[:2]
  scale = min(1.0, CROP / height, CROP / width)
  fitted = (min(CROP, int(np.floor(height * np.float32(scale) + 0.5))),
            min(CROP, int(np.floor(width * np.float32(scale) + 0.5))))

  x = resize_bilinear(jnp.asarray(image, jnp.float32)[None], fitted)
  canvas = jnp.pad(x, ((0, 0), (0, CROP - fitted[0]), (0, CROP - fitted[1]), (0, 0)),
                   constant_values=127.5)
  logits = resize_bilinear(apply_fn(canvas), (CROP, CROP))
  logits = resize_nearest(logits[:, :fitted[0], :fitted[1]], (height, width))[0]
  top2 = np.sort(np.asarray(logits), axis=-1)[..., -2:]
  return (np.asarray(jnp.argmax(logits, -1)), np.asarray(jax.nn.softmax(logits, -1)),
          top2[..., 1] - top2[..., 0])


def assert_same_labels(labels, expected, margin):
  """Equal, except ≤0.1% of pixels where the top-2 logits are within 1e-3."""
  assert labels.shape == expected.shape
  differ = labels != expected
  assert differ.mean() <= 0.001, f'{differ.mean():.4%} of the labels differ'
  assert np.all(margin[differ] < 1e-3), 'labels differ where the prediction is clear'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  config = voc_mnv2.get_config('tiny')
  assert tuple(config.eval_crop_size) == (CROP, CROP)
  model = create_model(config)
  apply = jax.jit(lambda variables, x: model.apply(variables, x))
  variables = random_variables(config)
  variables = with_calibrated_logits(
      variables, apply(variables, jnp.asarray(natural_image(CROP, CROP), jnp.float32)[None]))
  apply_fn = lambda x: apply(variables, x)
  output_dir = str(tmp_path_factory.mktemp('export'))
  info = export.export_model(config, variables, output_dir, with_probabilities=True)
  # 97x120 fits the crop (padded only); 97x130 and 160x140 are shrunk to fit.
  images = {shape: natural_image(*shape, seed=i)
            for i, shape in enumerate([(97, 120), (97, 130), (160, 140)])}
  expected = {shape: reference(apply_fn, image) for shape, image in images.items()}
  return dict(config=config, variables=variables, dir=output_dir, info=info, images=images,
              expected=expected, apply_fn=apply_fn)


def test_writes_every_artifact_and_describes_them(setup):
  files = sorted(os.listdir(setup['dir']))
  assert files == ['deeplab.jax_export', 'export_info.json', 'model.tflite', 'saved_model']
  with open(os.path.join(setup['dir'], 'export_info.json')) as f:
    info = json.load(f)
  assert info == json.loads(json.dumps(setup['info']))
  assert info['num_classes'] == 21 and info['crop_size'] == [CROP, CROP]
  assert info['colormap'] == 'pascal'
  assert 'cpu' in info['artifacts']['jax_export']['platforms']
  assert 'tpu' in info['artifacts']['jax_export']['platforms']
  assert info['artifacts']['tflite']['inputs']['images'] == {'dtype': 'uint8',
                                                             'shape': [1, CROP, CROP, 3]}
  assert set(info['artifacts']['saved_model']['outputs']) == {'labels', 'probabilities'}


def test_reference_labels_are_varied(setup):
  for labels, _, _ in setup['expected'].values():
    assert len(np.unique(labels)) >= 3


def test_jax_export_any_size_and_batch(setup):
  with open(os.path.join(setup['dir'], 'deeplab.jax_export'), 'rb') as f:
    exported = jax.export.deserialize(bytearray(f.read()))
  call = jax.jit(exported.call)
  for shape in [(97, 120), (97, 130)]:
    outputs = call(setup['images'][shape][None])
    labels, probabilities, margin = setup['expected'][shape]
    assert outputs['labels'].dtype == jnp.int32
    assert_same_labels(np.asarray(outputs['labels'])[0], labels, margin)
    np.testing.assert_allclose(np.asarray(outputs['probabilities'])[0], probabilities, atol=1e-4)
  # A batch of two images of one size.
  flipped = setup['images'][(97, 130)][::-1]
  outputs = call(np.stack([setup['images'][(97, 130)], flipped]))
  assert outputs['labels'].shape == (2, 97, 130)
  for labels, (expected, _, margin) in zip(
      outputs['labels'], [setup['expected'][(97, 130)], reference(setup['apply_fn'], flipped)]):
    assert_same_labels(np.asarray(labels), expected, margin)


def test_saved_model(setup):
  loaded = tf.saved_model.load(os.path.join(setup['dir'], 'saved_model'))
  serve = loaded.signatures['serving_default']
  assert list(serve.structured_input_signature[1]) == ['images']
  for shape in [(97, 120), (160, 140)]:
    outputs = serve(images=tf.constant(setup['images'][shape][None]))
    labels, probabilities, margin = setup['expected'][shape]
    assert_same_labels(outputs['labels'].numpy()[0], labels, margin)
    np.testing.assert_allclose(outputs['probabilities'].numpy()[0], probabilities, atol=1e-4)


def test_tflite_on_a_full_canvas(setup):
  interpreter = tf.lite.Interpreter(model_path=os.path.join(setup['dir'], 'model.tflite'))
  interpreter.allocate_tensors()
  (inputs,), (outputs,) = interpreter.get_input_details(), interpreter.get_output_details()
  assert inputs['dtype'] == np.uint8 and list(inputs['shape']) == [1, CROP, CROP, 3]
  assert outputs['dtype'] == np.int32 and list(outputs['shape']) == [1, CROP, CROP]
  image = natural_image(CROP, CROP, seed=7)
  interpreter.set_tensor(inputs['index'], image[None])
  interpreter.invoke()
  labels, _, margin = reference(setup['apply_fn'], image)
  assert_same_labels(interpreter.get_tensor(outputs['index'])[0], labels, margin)


def test_predictor_from_export_equals_from_variables(setup):
  from_export = predictor.Predictor.from_export(setup['dir'])
  from_variables = predictor.Predictor.from_variables(setup['config'], setup['variables'])
  assert from_export.num_classes == 21 and from_export.colormap == 'pascal'
  for shape in [(97, 120), (97, 130)]:
    image = setup['images'][shape]
    _, _, margin = setup['expected'][shape]
    assert_same_labels(from_export.predict(image), from_variables.predict(image), margin)
    labels, probabilities = from_export.predict_probabilities(image)
    _, expected_probabilities = from_variables.predict_probabilities(image)
    assert labels.shape == shape and probabilities.shape == (*shape, 21)
    np.testing.assert_allclose(probabilities, expected_probabilities, atol=1e-4)


def test_from_export_rejects_a_missing_or_foreign_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='No exported model'):
    predictor.Predictor.from_export(str(tmp_path))
  (tmp_path / 'deeplab.jax_export').write_bytes(b'not a model')
  with pytest.raises(ValueError, match='not a jax.export artifact'):
    predictor.Predictor.from_export(str(tmp_path))


def test_export_rejects_variables_of_another_model(setup, tmp_path):
  config = voc_mnv2.get_config('tiny')
  config.model.num_classes = 5
  with pytest.raises(ValueError, match=r'logits/semantic/weights: \(1, 1, 256, 21\) in the variables'):
    export.export_model(config, setup['variables'], str(tmp_path))


def test_export_from_a_workdir_uses_its_latest_checkpoint(setup, tmp_path):
  # What `main.py --mode=export` runs.
  workdir, output_dir = str(tmp_path / 'run'), str(tmp_path / 'exported')
  checkpointing.save_variables(workdir, setup['variables'], step=12)
  info = export.export_from_workdir(setup['config'], workdir, output_dir, tflite=False)
  assert info['step'] == 12
  assert sorted(os.listdir(output_dir)) == ['deeplab.jax_export', 'export_info.json',
                                            'saved_model']
  image = setup['images'][(97, 120)]
  _, _, margin = setup['expected'][(97, 120)]
  assert_same_labels(predictor.Predictor.from_export(output_dir).predict(image),
                     predictor.Predictor.from_variables(setup['config'],
                                                        setup['variables']).predict(image),
                     margin)
