"""The shipped config files (configs/*.py), loaded by path as `--config=` loads them."""

import os
import types

from deeplab_jax import config_defaults

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs')


def module(name: str) -> types.ModuleType:
  """configs/<name>.py as a module: `module('voc_mnv2').get_config('tiny')`."""
  return config_defaults.load_config_module(os.path.join(CONFIGS_DIR, f'{name}.py'))
