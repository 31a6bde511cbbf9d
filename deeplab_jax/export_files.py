"""The files an export directory holds, and reading the jax.export one back.

Below both `export.py` (which writes them) and `predictor.py` (whose
`Predictor.from_export` serves them), so neither imports the other to share
them.
"""

import json
import os

import jax
from jax import export as jax_export

EXPORT_FILE = 'deeplab.jax_export'
SAVED_MODEL_DIR = 'saved_model'
TFLITE_FILE = 'model.tflite'
INFO_FILE = 'export_info.json'


def read_export(path: str):
  """(jitted call: uint8 images → {'labels'[, 'probabilities']}, whether it gives
  probabilities, the export_info dict or {}) of an `EXPORT_FILE` or its directory."""
  path = os.fspath(path)
  file = os.path.join(path, EXPORT_FILE) if os.path.isdir(path) else path
  if not os.path.isfile(file):
    raise FileNotFoundError(f'No exported model at {file} (write one with --mode=export).')
  with open(file, 'rb') as f:
    try:
      exported = jax_export.deserialize(bytearray(f.read()))
    except Exception as error:  # pylint: disable=broad-except  (flatbuffer/MLIR errors vary)
      raise ValueError(f'{file} is not a jax.export artifact: {error}') from error
  output_names = jax.tree.unflatten(exported.out_tree, range(len(exported.out_avals)))
  if not isinstance(output_names, dict) or 'labels' not in output_names:
    raise ValueError(f'{file} was not written by deeplab_jax.export (outputs {output_names}).')
  info_file = os.path.join(os.path.dirname(file), INFO_FILE)
  info = {}
  if os.path.isfile(info_file):
    with open(info_file) as f:
      info = json.load(f)
  return jax.jit(exported.call), 'probabilities' in output_names, info
