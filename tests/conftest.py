"""Shared test helpers: where the golden fixtures are; subprocesses import this checkout."""

import atexit
import lzma
import os
import shutil
import tempfile

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TF is only our data reader here.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tests import the package through pytest's `pythonpath` (pyproject.toml); the
# processes they start (main.py, workers, benchmarks) through PYTHONPATH.
os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')]))

# A test whose config has no dataset.data_dir must not write into the user's
# TFDS data dir (~/tensorflow_datasets). For the session, TFDS's default is this
# empty folder instead (set before any test module imports TFDS; subprocesses
# inherit it), and a test that leaves anything in it fails.
DEFAULT_TFDS_DIR = tempfile.mkdtemp(prefix='deeplab_tests_default_tfds_')
os.environ['TFDS_DATA_DIR'] = DEFAULT_TFDS_DIR
atexit.register(shutil.rmtree, DEFAULT_TFDS_DIR, True)


@pytest.fixture(autouse=True)
def nothing_written_to_the_default_tfds_dir(request):
  yield
  written = sorted(os.listdir(DEFAULT_TFDS_DIR))
  for name in written:
    shutil.rmtree(os.path.join(DEFAULT_TFDS_DIR, name), ignore_errors=True)
  if written:
    pytest.fail(f'{request.node.nodeid} wrote {written} into the default TFDS data dir '
                '(~/tensorflow_datasets outside tests): give its config a tmp '
                'config.dataset.data_dir.')


def fixtures_dir() -> str:
  """`$DEEPLAB_FIXTURES`, default `<repo>/../shared/fixtures`; fails clearly if absent."""
  path = os.environ.get('DEEPLAB_FIXTURES', os.path.join(REPO, '..', 'shared', 'fixtures'))
  if not os.path.isdir(path):
    pytest.fail(f'Golden fixtures not found at {os.path.abspath(path)}. Put the shared '
                'fixtures there or point DEEPLAB_FIXTURES at them.')
  return path


@pytest.fixture(scope='session')
def tf_checkpoint(tmp_path_factory):
  """Returns name -> TF checkpoint prefix, decompressing the .xz data once."""
  cache = {}

  def get(name):
    if name not in cache:
      source = os.path.join(fixtures_dir(), name)
      target = tmp_path_factory.mktemp(name)
      for file in os.listdir(source):
        if file.startswith('model.ckpt.data') and file.endswith('.xz'):
          with lzma.open(os.path.join(source, file)) as f, open(target / file[:-3], 'wb') as out:
            shutil.copyfileobj(f, out)
        elif file.startswith('model.ckpt'):
          shutil.copy(os.path.join(source, file), target / file)
      cache[name] = str(target / 'model.ckpt')
    return cache[name]

  return get
