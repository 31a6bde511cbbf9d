"""The evaluation log: a per-class table and a warning when predictions collapse."""

import numpy as np

from deeplab_jax import evaluate

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
