"""Keep freed host memory in the process instead of returning it to the OS.

XLA:CPU mallocs each call's temporary buffers (60 MB for MobileNetV2 at
513x513, 260 MB for Xception-65) and frees them when the call ends. glibc
serves blocks that large with a fresh mmap each time, so every call
page-faults its whole working set in again: 15k to 67k page faults per call,
about a quarter of a MobileNetV2 inference on a 2-core CPU. With large blocks
kept in one heap and never trimmed, later calls reuse the same pages.

"Never" matters: training dispatches the next step before the last one ends,
so two steps' buffers (2.8 GB for MobileNetV2+decoder, 320x320, batch 4)
come and go together. Above the 1 GB trim threshold this first set, glibc
returned them to the OS every few steps: 150k page faults per step.
"""

import ctypes
import ctypes.util

# mallopt() parameters of glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def keep_freed_memory() -> bool:
  """Tunes glibc's malloc so freed blocks are reused; False where it can't.

  Call it before JAX starts its threads (before the first computation):
  threads that have already allocated keep their own heaps."""
  name = ctypes.util.find_library('c')
  try:
    libc = ctypes.CDLL(name)
    mallopt = libc.mallopt
  except (OSError, AttributeError, TypeError):
    return False  # Not glibc (e.g. macOS): nothing to tune.
  # One heap for all threads: blocks freed by one are reused by another.
  applied = mallopt(_M_ARENA_MAX, 1)
  # Large blocks from that heap instead of mmap, and never give them back
  # (a trim threshold of -1 disables trimming: `man mallopt`).
  applied &= mallopt(_M_MMAP_MAX, 0)
  applied &= mallopt(_M_TRIM_THRESHOLD, -1)
  return bool(applied)
