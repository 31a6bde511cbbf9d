"""Evaluation: built once per run, its log (a per-class table, a collapse
warning) and the dataset facts it names classes with."""

import json

import jax
import numpy as np

from deeplab_jax import evaluate
from deeplab_jax import parallel
from deeplab_jax import train
from deeplab_jax.data import datasets
import train_test
from train_test import compilation_cache  # pylint: disable=unused-import  (a shared XLA cache)

NAMES = ['background', 'star', 'a long class name']


def test_per_class_table_shows_iou_and_pixel_shares_by_name():
  confusion = np.array([[700, 100, 0], [50, 150, 0], [0, 0, 0]])
  table = evaluate.per_class_table(confusion, NAMES).splitlines()
  assert table[0].split() == ['class', 'IoU', 'labelled', 'predicted']
  assert table[1].split() == ['background', f'{700 / 850:.3f}', '80.00%', '75.00%']
  assert table[2].split() == ['star', f'{150 / 300:.3f}', '20.00%', '25.00%']
  # Absent from labels and predictions: no IoU.
  assert table[3].split() == ['a', 'long', 'class', 'name', '-', '0.00%', '0.00%']


def test_collapse_to_one_class_is_named():
  collapsed = np.array([[800, 0, 0], [100, 0, 0], [97, 3, 0]])
  warning = evaluate.collapse_warning(collapsed, NAMES)
  assert warning.startswith("99.7% of the pixels are predicted as 'background'")
  assert '2 other classes' in warning
  assert '--mode=check_data' in warning and 'README.md' in warning
  # A class found at all (1% of its pixels or more) is no collapse...
  found = collapsed.copy()
  found[2] = [90, 0, 10]
  assert evaluate.collapse_warning(found, NAMES) is None
  # ...nor are labels that hold one class, or predictions spread over several.
  assert evaluate.collapse_warning(np.diag([1000, 0, 0]), NAMES) is None
  assert evaluate.collapse_warning(np.array([[500, 400, 0], [100, 0, 0], [0, 0, 0]]),
                                   NAMES) is None


# --- Built once per run ------------------------------------------------------------

INFO = datasets.DatasetInfo(name='custom', num_classes=3, ignore_label=255,
                            class_names=('sky', 'road', 'car'), colormap='cityscapes',
                            splits={'train': 4, 'val': 4})


def test_an_evaluator_compiles_once_and_names_classes_from_the_facts_passed_in(tmp_path):
  """The facts are the ones resolved at startup: the config's dataset folder
  is not on this machine, so resolving them again could not find them."""
  config = train_test.tiny_config()
  config.dataset.name = 'custom'
  config.dataset.data_dir = str(tmp_path / 'not_on_this_machine')
  mesh = parallel.make_mesh()
  evaluator = evaluate.Evaluator(config, mesh, source=train_test.source_dataset(4),
                                 dataset_info=INFO)
  first = evaluator(train.initial_variables(config, mesh, seed=0), step=1)
  compiles = []

  def count(event, duration, **unused):
    del duration, unused
    compiles.append(event)

  variables = train.initial_variables(config, mesh, seed=1)
  jax.monitoring.register_event_duration_secs_listener(count)
  try:
    second = evaluator(variables, step=2)
  finally:
    jax.monitoring.unregister_event_duration_listener(count)
  assert '/jax/core/compile/backend_compile_duration' not in compiles
  assert first.results['num_images'] == second.results['num_images'] == 4
  assert not np.array_equal(first.confusion, second.confusion)  # Other weights, other labels.
  workdir = tmp_path / 'workdir'
  evaluate.write_evaluation(second, str(workdir))
  with open(workdir / evaluate.RESULTS_FILE) as f:
    results = json.load(f)
  assert results['step'] == 2 and list(results['per_class_iou']) == ['sky', 'road', 'car']


def test_output_facts_have_one_fallback_where_the_dataset_is_not_here(tmp_path):
  config = train_test.tiny_config()
  config.dataset.name = 'custom'
  config.dataset.data_dir = str(tmp_path / 'not_on_this_machine')
  assert datasets.output_facts(config) == ('pascal', None)
  assert datasets.output_facts(config, INFO) == ('cityscapes', ['sky', 'road', 'car'])
  config.model.num_classes = 4  # Names that do not fit the model are not used.
  assert datasets.output_facts(config, INFO) == ('cityscapes', None)
  config.dataset.name = 'cityscapes'  # A registered dataset: its facts need no data.
  config.dataset.ignore_label = 255
  config.model.num_classes = 19
  colormap, names = datasets.output_facts(config)
  assert colormap == 'cityscapes' and names[:2] == ['road', 'sidewalk']
