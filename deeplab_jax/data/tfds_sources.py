"""What the TFDS builders of PASCAL VOC and ADE20K share: the features they
store, and where their archives come from (the manual dir, extracted or not,
else a download), with errors that say what to put where."""

import os

import tensorflow_datasets as tfds

from deeplab_jax.data import archives


def segmentation_features() -> tfds.features.FeaturesDict:
  """An RGB image (JPEG), its class-id label (single-channel PNG), its name."""
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
      'label': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
      'name': tfds.features.Text(),
  })


def _manual_dir(dl_manager):
  """(the manual dir, None), or (None, why there is none)."""
  try:
    return os.fspath(dl_manager.manual_dir), None
  except AssertionError as error:  # TFDS: not given, missing or empty.
    return None, str(error).splitlines()[0].split('. Create')[0]


def _archive_path(dl_manager, manual_dir, problem, dataset, file_name, url,
                  instructions) -> str:
  """The archive from the manual dir, else downloaded, else a clear error."""
  if manual_dir is not None:
    candidate = os.path.join(manual_dir, file_name)
    if os.path.isfile(candidate):
      return candidate
    problem = f'it is not in the manual dir {manual_dir}'
  if not archives.url_reachable(url):
    raise FileNotFoundError(
        f'{dataset} needs {file_name}: {problem}, and {url} cannot be reached '
        'to download it.\n' + instructions)
  try:
    return os.fspath(dl_manager.download(url))
  except Exception as error:  # pylint: disable=broad-except
    raise FileNotFoundError(
        f'{dataset} needs {file_name}: {problem}, and downloading {url} failed '
        f'({type(error).__name__}: {error}).\n' + instructions) from error


def archive_folder(dl_manager, dataset: str, file_name: str, url: str,
                   inner: str, instructions: str) -> str:
  """The folder `inner` of the archive `file_name`, ready to read.

  A copy already extracted in the manual dir is used in place. Otherwise the
  archive (from the manual dir, else downloaded from `url`) is extracted once
  under the download dir.
  """
  manual_dir, problem = _manual_dir(dl_manager)
  if manual_dir is not None and os.path.isdir(os.path.join(manual_dir, inner)):
    return os.path.join(manual_dir, inner)
  archive = _archive_path(dl_manager, manual_dir, problem, dataset, file_name,
                          url, instructions)
  folder = archives.extract_once(
      archive, os.path.join(os.fspath(dl_manager.download_dir), 'extracted',
                            file_name + '.dir'))
  root = os.path.join(folder, inner)
  if not os.path.isdir(root):
    raise FileNotFoundError(
        f'{archive} does not contain {inner}/: is it the official {file_name}?')
  return root
