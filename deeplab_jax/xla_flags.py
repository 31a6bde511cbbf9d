"""XLA:CPU flags measured faster for DeepLab, set before JAX starts its backend.

Only `xla_cpu_*` flags, which TPU and GPU backends ignore. A flag the user
already put in XLA_FLAGS wins.
"""

import os

# YNNPACK, XLA:CPU's kernel library, keeps the reductions and leaves matmuls to
# XLA's own: those were up to 2x faster on the thin 1x1 convs of MobileNetV2
# (16 to 160 channels). MobileNetV2 inference 0.051 -> 0.047 s at 513x513;
# Xception-65, ResNet-50 and the training steps unchanged (benchmarks/).
CPU_FLAGS = ('--xla_cpu_experimental_ynn_fusion_type=reduce',)


def add_cpu_flags() -> None:
  """Appends CPU_FLAGS to XLA_FLAGS, except flags the user set there."""
  current = os.environ.get('XLA_FLAGS', '').split()
  user_set = {flag.split('=')[0] for flag in current}
  added = [flag for flag in CPU_FLAGS if flag.split('=')[0] not in user_set]
  os.environ['XLA_FLAGS'] = ' '.join(current + added)
