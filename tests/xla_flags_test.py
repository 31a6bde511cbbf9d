"""XLA:CPU flags (xla_flags.py): applied before the backend starts, user's wins."""

import os
import subprocess
import sys

from deeplab_jax import xla_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Prints whether the compiled 1x1-conv-sized matmul went to YNNPACK.
_PROBE = """
from deeplab_jax import xla_flags
if {add}:
  xla_flags.add_cpu_flags()
import os, jax, jax.numpy as jnp
a = jnp.ones((1089, 160)); b = jnp.ones((160, 960))
print(os.environ.get('XLA_FLAGS', ''))
print('ynn dot' if 'ynn_fusion' in jax.jit(jnp.dot).lower(a, b).compile().as_text() else 'xla dot')
"""


def probe(add: bool, xla_flags_env: str = ''):
  env = dict(os.environ, XLA_FLAGS=xla_flags_env)
  out = subprocess.run([sys.executable, '-c', _PROBE.format(add=add)], env=env,
                       capture_output=True, text=True, check=True).stdout.split('\n')
  return out[0], out[1]


def test_flags_move_matmuls_off_ynnpack_and_keep_user_flags():
  assert probe(add=False)[1] == 'ynn dot'  # XLA's default, which the flag changes.
  flags, kernel = probe(add=True, xla_flags_env='--xla_force_host_platform_device_count=2')
  assert kernel == 'xla dot'
  assert flags.split() == ['--xla_force_host_platform_device_count=2', *xla_flags.CPU_FLAGS]


def test_a_flag_the_user_set_wins():
  user = '--xla_cpu_experimental_ynn_fusion_type=dot,reduce'
  flags, kernel = probe(add=True, xla_flags_env=user)
  assert flags == user
  assert kernel == 'ynn dot'
