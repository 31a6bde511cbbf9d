"""The original's rule for reaching an output stride with atrous convolution."""

from typing import Tuple

VALID_OUTPUT_STRIDES = (8, 16, 32)


def check_output_stride(output_stride: int) -> None:
  if output_stride not in VALID_OUTPUT_STRIDES:
    raise ValueError(f'config.model.output_stride={output_stride!r} is not supported; '
                     f'use one of {VALID_OUTPUT_STRIDES}.')


class AtrousSchedule:
  """Tracks the running stride and dilation rate layer by layer.

  Until `target_stride` is reached a layer keeps its stride. After that its
  stride becomes 1 and it is dilated by the *current* rate; only the layers
  after it see the rate multiplied by the removed stride.
  """

  def __init__(self, target_stride: int):
    self.target_stride = target_stride
    self.current_stride = 1
    self.rate = 1

  def next(self, stride: int) -> Tuple[int, int]:
    """(stride, rate) for a layer of nominal `stride`."""
    if self.current_stride == self.target_stride:
      rate = self.rate
      self.rate *= stride
      return 1, rate
    self.current_stride *= stride
    if self.current_stride > self.target_stride:
      raise ValueError(f'Output stride {self.target_stride} cannot be reached exactly.')
    return stride, 1
