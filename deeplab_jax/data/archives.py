"""Safe extraction of tar and zip archives.

Downloaded archives are untrusted: a member named `/etc/x` or `../../x`, or a
link pointing out of the target, would write outside the extraction folder.
Every member is checked twice: by name before anything is written (so a bad
archive extracts nothing), and against the real file system just before it is
written (which also catches chains of links that only escape once resolved).
"""

import os
import posixpath
import shutil
import socket
import tarfile
import urllib.parse
import zipfile
import zlib


class UnsafeArchiveError(ValueError):
  """An archive member would land outside the extraction folder."""


def _lexically_inside(relative_path: str) -> bool:
  """Whether a '/'-separated relative path stays inside its root by name."""
  if not relative_path or relative_path.startswith('/'):
    return False
  if len(relative_path) > 1 and relative_path[1] == ':':  # C:\ style.
    return False
  normalized = posixpath.normpath(relative_path)
  return normalized != '..' and not normalized.startswith('../')


def _really_inside(root: str, path: str) -> bool:
  root = os.path.realpath(root)
  return os.path.commonpath([root, os.path.realpath(path)]) == root


def _refuse(archive_path, member_name, why):
  raise UnsafeArchiveError(
      f'Refusing to extract {archive_path}: member {member_name!r} {why}.')


def _check_tar_member(archive_path: str, member: tarfile.TarInfo) -> None:
  name = member.name.replace('\\', '/')
  if not _lexically_inside(name):
    _refuse(archive_path, member.name, 'has an absolute path or escapes with ..')
  if member.issym():
    target = posixpath.join(posixpath.dirname(name), member.linkname)
    if member.linkname.startswith('/') or not _lexically_inside(target):
      _refuse(archive_path, member.name,
              f'is a symlink pointing outside ({member.linkname!r})')
  elif member.islnk():
    if not _lexically_inside(member.linkname.replace('\\', '/')):
      _refuse(archive_path, member.name,
              f'is a hard link pointing outside ({member.linkname!r})')
  elif not (member.isfile() or member.isdir()):
    _refuse(archive_path, member.name, 'is a device or FIFO')


def _check_tar_complete(tar: tarfile.TarFile, members) -> None:
  """A tar cut short between two members reads as a shorter archive; a whole one
  ends with two zero blocks after its last member's data."""
  if not members:
    return
  last = members[-1]
  tar.fileobj.seek(last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
  marker = tar.fileobj.read(2 * tarfile.BLOCKSIZE)
  if len(marker) < 2 * tarfile.BLOCKSIZE or any(marker):
    raise tarfile.ReadError('no end-of-archive marker after the last member')


def _extract_tar(archive_path: str, target_dir: str) -> None:
  with tarfile.open(archive_path, mode='r:*') as tar:
    members = tar.getmembers()
    _check_tar_complete(tar, members)
    for member in members:
      _check_tar_member(archive_path, member)
    for member in members:
      destination = os.path.join(target_dir, member.name)
      if not _really_inside(target_dir, destination):
        _refuse(archive_path, member.name, 'resolves outside through a link')
      if member.issym():
        link_target = os.path.join(os.path.dirname(destination), member.linkname)
        if not _really_inside(target_dir, link_target):
          _refuse(archive_path, member.name,
                  'is a symlink resolving outside through another link')
      # The 'data' filter also drops set-uid bits and foreign ownership.
      tar.extract(member, target_dir, filter='data')


def _extract_zip(archive_path: str, target_dir: str) -> None:
  with zipfile.ZipFile(archive_path) as archive:
    infos = archive.infolist()
    for info in infos:
      if not _lexically_inside(info.filename.replace('\\', '/')):
        _refuse(archive_path, info.filename,
                'has an absolute path or escapes with ..')
    for info in infos:
      destination = os.path.join(target_dir, info.filename)
      if not _really_inside(target_dir, destination):
        _refuse(archive_path, info.filename, 'resolves outside through a link')
      archive.extract(info, target_dir)


def safe_extract(archive_path: str, target_dir: str) -> None:
  """Extracts a tar (plain, .gz, .bz2, .xz) or zip archive into `target_dir`.

  Raises:
    UnsafeArchiveError: some member would be written (or link) outside
      `target_dir`: absolute paths, `..`, links leaving the folder, devices.
    ValueError: the file is neither a tar nor a zip archive, or it is damaged
      or cut short.
  """
  archive_path = os.fspath(archive_path)
  target_dir = os.fspath(target_dir)
  os.makedirs(target_dir, exist_ok=True)
  try:
    if zipfile.is_zipfile(archive_path):
      _extract_zip(archive_path, target_dir)
    elif tarfile.is_tarfile(archive_path):
      _extract_tar(archive_path, target_dir)
    else:
      raise ValueError(f'{archive_path} is neither a tar nor a zip archive.')
  except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as error:
    # A truncated download: the reader's own message names no file.
    raise ValueError(f'{archive_path} is damaged or incomplete ({error}); download it '
                     'again.') from error


def extract_once(archive_path: str, target_dir: str) -> str:
  """Safely extracts into `target_dir` unless a previous run completed it.

  Extraction goes to a temporary sibling folder that is renamed when done, so
  an interrupted run never leaves a half-extracted folder that looks finished.
  Returns `target_dir`.
  """
  target_dir = os.fspath(target_dir)
  if os.path.isdir(target_dir):
    return target_dir
  partial_dir = target_dir + '.incomplete'
  shutil.rmtree(partial_dir, ignore_errors=True)
  try:
    safe_extract(archive_path, partial_dir)
  except BaseException:
    shutil.rmtree(partial_dir, ignore_errors=True)
    raise
  os.rename(partial_dir, target_dir)
  return target_dir


def url_reachable(url: str, timeout_seconds: float = 10.0) -> bool:
  """A quick connect, so that with no network a builder fails in seconds
  with its "put the archive here" message, not after minutes of retries."""
  parsed = urllib.parse.urlparse(url)
  port = parsed.port or (443 if parsed.scheme == 'https' else 80)
  try:
    with socket.create_connection((parsed.hostname, port), timeout_seconds):
      return True
  except OSError:
    return False
