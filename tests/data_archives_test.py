"""Safe archive extraction refuses members that escape the target folder."""

import io
import tarfile
import zipfile

import pytest

from deeplab_jax.data import archives


def _add_file(tar, name, data=b'x'):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def _add_link(tar, name, target, kind=tarfile.SYMTYPE):
  info = tarfile.TarInfo(name)
  info.type = kind
  info.linkname = target
  tar.addfile(info)


def _make_tar(path, build):
  with tarfile.open(path, 'w:gz') as tar:
    build(tar)
  return path


def test_extracts_a_well_formed_tar_with_inner_links(tmp_path):
  def build(tar):
    _add_file(tar, 'top/a.txt', b'hello')
    _add_link(tar, 'top/link_to_a', 'a.txt')
    _add_link(tar, 'top/hard_a', 'top/a.txt', tarfile.LNKTYPE)
  archive = _make_tar(tmp_path / 'ok.tgz', build)
  out = tmp_path / 'out'
  archives.safe_extract(archive, out)
  assert (out / 'top/a.txt').read_bytes() == b'hello'
  assert (out / 'top/link_to_a').read_bytes() == b'hello'
  assert (out / 'top/hard_a').read_bytes() == b'hello'


@pytest.mark.parametrize('build, why', [
    (lambda t: _add_file(t, '/tmp/evil_abs.txt'), 'absolute'),
    (lambda t: _add_file(t, 'a/../../evil_dotdot.txt'), 'escapes'),
    (lambda t: _add_link(t, 'a/out', '../../outside'), 'symlink'),
    (lambda t: _add_link(t, 'a/out', '/etc/passwd'), 'symlink'),
    (lambda t: _add_link(t, 'a/hard', '../outside', tarfile.LNKTYPE),
     'hard link'),
    (lambda t: _add_link(t, 'dev', '', tarfile.CHRTYPE), 'device'),
])
def test_refuses_malicious_tar_members_and_writes_nothing(tmp_path, build, why):
  def full_build(tar):
    _add_file(tar, 'good_first.txt')  # Must not be written either.
    build(tar)
  archive = _make_tar(tmp_path / 'evil.tgz', full_build)
  out = tmp_path / 'out'
  with pytest.raises(archives.UnsafeArchiveError, match=why) as error:
    archives.safe_extract(archive, out)
  assert 'evil.tgz' in str(error.value)
  assert not (out / 'good_first.txt').exists()
  assert not (tmp_path / 'evil_dotdot.txt').exists()


def test_refuses_symlink_chain_that_escapes_only_when_resolved(tmp_path):
  # Each link looks inside by name; together they point one level above.
  def build(tar):
    _add_link(tar, 'deep/up', '..')  # Really: out/.
    _add_link(tar, 'x', 'deep/up/..')  # Lexically '.', really out/.. .
    _add_file(tar, 'x/escaped.txt')
  archive = _make_tar(tmp_path / 'chain.tgz', build)
  with pytest.raises(archives.UnsafeArchiveError):
    archives.safe_extract(archive, tmp_path / 'out')
  assert not (tmp_path / 'escaped.txt').exists()


def test_refuses_malicious_zip(tmp_path):
  archive = tmp_path / 'evil.zip'
  with zipfile.ZipFile(archive, 'w') as z:
    z.writestr('fine.txt', 'ok')
    z.writestr('../escaped.txt', 'bad')
  with pytest.raises(archives.UnsafeArchiveError, match='escaped.txt'):
    archives.safe_extract(archive, tmp_path / 'out')
  assert not (tmp_path / 'escaped.txt').exists()
  assert not (tmp_path / 'out' / 'fine.txt').exists()


def test_extract_once_skips_a_finished_folder_and_cleans_a_failed_one(tmp_path):
  good = tmp_path / 'good.zip'
  with zipfile.ZipFile(good, 'w') as z:
    z.writestr('dir/a.txt', 'first')
  target = tmp_path / 'extracted'
  archives.extract_once(good, target)
  (target / 'dir/a.txt').write_text('kept')
  archives.extract_once(good, target)  # Already complete: untouched.
  assert (target / 'dir/a.txt').read_text() == 'kept'

  bad = tmp_path / 'bad.zip'
  with zipfile.ZipFile(bad, 'w') as z:
    z.writestr('/abs.txt', 'bad')
  with pytest.raises(archives.UnsafeArchiveError):
    archives.extract_once(bad, tmp_path / 'other')
  assert not (tmp_path / 'other').exists()
  assert not (tmp_path / 'other.incomplete').exists()


def test_rejects_a_file_that_is_no_archive(tmp_path):
  path = tmp_path / 'notes.txt'
  path.write_text('plain text')
  with pytest.raises(ValueError, match='neither a tar nor a zip'):
    archives.safe_extract(path, tmp_path / 'out')
