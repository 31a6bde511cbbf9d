"""What `--mode=check_data` found, and its text.

`check.check_dataset` fills a `Report` with `Problem`s (each with its file and
its fix), a `SplitSummary` per split and notes; `Report.format()` is the text
main.py prints.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

ERROR = 'error'
WARNING = 'warning'



@dataclasses.dataclass(frozen=True)
class Problem:
  """One thing wrong with the data, where it is, and what to do about it."""
  severity: str  # ERROR: training would fail or learn nonsense. WARNING: suspicious.
  kind: str  # e.g. 'corrupt_image', 'colour_label', 'label_values'.
  split: Optional[str]  # None for problems of the whole dataset.
  path: Optional[str]  # The file or folder; None when there is no one file.
  message: str
  fix: str


@dataclasses.dataclass
class SplitSummary:
  """What was found in one split."""
  name: str
  num_images: int = 0  # Image files found (including bad ones).
  num_read: int = 0  # Examples whose image and label were both read.
  min_size: Optional[Tuple[int, int]] = None  # (smallest height, smallest width).
  max_size: Optional[Tuple[int, int]] = None  # (largest height, largest width).
  class_pixels: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(256, np.int64))  # Pixels per label value.
  class_images: np.ndarray = dataclasses.field(
      default_factory=lambda: np.zeros(256, np.int64))  # Labels holding each value.

  def add_size(self, height: int, width: int) -> None:
    if self.min_size is None:
      self.min_size = self.max_size = (height, width)
    self.min_size = (min(self.min_size[0], height), min(self.min_size[1], width))
    self.max_size = (max(self.max_size[0], height), max(self.max_size[1], width))


@dataclasses.dataclass
class Report:
  """The outcome of `check_dataset`: `ok` unless some problem is an error."""
  dataset: str
  source: str  # The folder (custom) or the TFDS data dir that was read.
  num_classes: Optional[int] = None
  ignore_label: Optional[int] = None
  class_names: Tuple[str, ...] = ()
  classes_from: str = ''  # Where num_classes came from.
  splits: Dict[str, SplitSummary] = dataclasses.field(default_factory=dict)
  problems: List[Problem] = dataclasses.field(default_factory=list)
  notes: List[str] = dataclasses.field(default_factory=list)
  # Files read with a conversion: 'rotated_images', 'rotated_labels',
  # '16_bit_images' -> their paths (reported as notes).
  converted: Dict[str, List[str]] = dataclasses.field(default_factory=dict)
  num_errors: int = 0  # All errors found, listed or not.
  num_warnings: int = 0
  max_problems: Optional[int] = None

  @property
  def ok(self) -> bool:
    return self.num_errors == 0

  @property
  def num_left_off(self) -> int:
    return self.num_errors + self.num_warnings - len(self.problems)

  def add(self, problem: Problem) -> None:
    if problem.severity == ERROR:
      self.num_errors += 1
    else:
      self.num_warnings += 1
    if self.max_problems is None or len(self.problems) < self.max_problems:
      self.problems.append(problem)

  def problems_of(self, kind: str) -> List[Problem]:
    return [p for p in self.problems if p.kind == kind]

  def class_label(self, class_id: int) -> str:
    """A label value as the report shows it: id and name, or what it is not."""
    if class_id == self.ignore_label:
      return f'{class_id} (ignore)'
    if self.num_classes is not None and class_id < self.num_classes:
      name = (self.class_names[class_id]
              if class_id < len(self.class_names) else f'class_{class_id}')
      return f'{class_id} {name!r}'
    return f'{class_id} (not a class)'

  def shown_path(self, path: Optional[str]) -> Optional[str]:
    """`path` relative to the dataset's folder where it is inside it."""
    if path and self.source and os.path.isabs(path):
      relative = os.path.relpath(path, self.source)
      if not relative.startswith('..'):
        return relative
    return path

  def format(self) -> str:
    return _format_report(self)


def _format_split(report, summary) -> List[str]:
  lines = [f'Split {summary.name!r}: {summary.num_images} images, '
           f'{summary.num_read} read with their labels']
  if summary.min_size is not None:
    lines.append(f'  image sizes (HxW): height {summary.min_size[0]}..'
                 f'{summary.max_size[0]}, width {summary.min_size[1]}..'
                 f'{summary.max_size[1]}')
  pixels = summary.class_pixels
  total = int(pixels.sum())
  if total:
    lines.append(f'  {"class":<28} {"pixels":>12} {"share":>7} {"labels":>7}')
    for value in np.flatnonzero(pixels):
      lines.append(f'  {report.class_label(int(value)):<28} '
                   f'{int(pixels[value]):>12,} '
                   f'{100 * pixels[value] / total:>6.2f}% '
                   f'{int(summary.class_images[value]):>7}')
    if report.num_classes:
      present = sum(1 for c in range(report.num_classes)
                    if c != report.ignore_label and pixels[c])
      counted = report.num_classes - (report.ignore_label < report.num_classes)
      lines.append(f'  {present} of {counted} classes occur.')
  return lines


def plural(count: int, word: str) -> str:
  return f'{count} {word}' + ('' if count == 1 else 's')


def _format_report(report: Report) -> str:
  lines = [f'Data check of {report.dataset!r}'
           + (f' ({report.source})' if report.source else '')]
  if report.num_classes is not None:
    lines.append(f'{report.num_classes} classes ({report.classes_from}), '
                 f'ignore label {report.ignore_label}')
  for summary in report.splits.values():
    lines.append('')
    lines.extend(_format_split(report, summary))
  lines.append('')
  lines.append(f'Problems: {plural(report.num_errors, "error")}, '
               f'{plural(report.num_warnings, "warning")}')
  for problem in report.problems:
    where = ' '.join(filter(None, [
        f'[{problem.split}]' if problem.split else None,
        report.shown_path(problem.path)]))
    lines.append(f'  {problem.severity.upper():<7} {where}: {problem.message}')
    lines.append(f'          fix: {problem.fix}')
  if report.num_left_off:
    lines.append(f'  ... and {report.num_left_off} more not listed '
                 f'(max_problems={report.max_problems}).')
  if report.notes:
    lines.append('')
    lines.append('Notes:')
    lines.extend(f'  {note}' for note in report.notes)
  lines.append('')
  if report.ok:
    lines.append('OK: no errors' + (' (see the warnings above).'
                                    if report.num_warnings else '.'))
  else:
    lines.append(f'NOT OK: fix the {plural(report.num_errors, "error")} above '
                 'before training.')
  return '\n'.join(lines)
