"""Shared test helpers: where the golden fixtures are, and the repo on sys.path."""

import lzma
import os
import shutil
import sys

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TF is only our data reader here.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


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
