"""Files at a local path or a pyarrow filesystem URI (``file://``, ``s3://``, ``gs://``, ...).

Shard sets and sweep experiments both live at such a location; this is the one place that
turns one into a ``(pyarrow filesystem, path in it)`` pair and reads, writes, lists or copies
files there. Writes are atomic where the filesystem allows it: a temp file beside the target,
renamed onto it (local disks), or a single upload (object stores, where an object appears
whole or not at all).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import socket
import uuid
from pathlib import Path

import pyarrow.fs as pafs

from fxdist.errors import ClusterError, FxdistError
from fxdist.fsutil import atomic_path, write_bytes_atomic


def is_uri(location: str | os.PathLike) -> bool:
    """Whether ``location`` names a filesystem by scheme (``file://``, ``s3://``, ...)."""
    return "://" in os.fspath(location)


def normalise(location: str | os.PathLike) -> str:
    """A URI without trailing slashes, or a local path made absolute (``~`` expanded)."""
    text = os.fspath(location)
    return text.rstrip("/") if is_uri(text) else os.path.abspath(os.path.expanduser(text))


def resolve(
    location: str | os.PathLike, *, error: type[FxdistError] = ClusterError, what: str = "storage"
) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path in it) for a local path or a URI.

    A URI whose filesystem cannot be opened raises ``error`` naming ``what`` and the URI.
    """
    text = os.fspath(location)
    if is_uri(text):
        try:
            fs, path = pafs.FileSystem.from_uri(text)
        except (ValueError, OSError, NotImplementedError) as exc:  # ArrowInvalid, ArrowNotImplementedError, ...
            raise error(f"{what} {text}: cannot open its filesystem ({exc})") from exc
    else:
        fs, path = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(text))
    return fs, path.rstrip("/") or "/"


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for a local path or a URI (the scheme is kept)."""
    return "/".join([base.rstrip("/"), *parts])


def is_file(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type == pafs.FileType.File


def exists(location: str) -> bool:
    """Whether a file is at ``location`` (False when it cannot be looked up)."""
    fs, path = resolve(location)
    try:
        return is_file(fs, path)
    except (OSError, ValueError):
        return False


def temp_name(path: str) -> str:
    """A hidden name beside ``path`` (``.<name>.tmp-<random>``) to write it under first."""
    head, name = posixpath.split(path)
    return posixpath.join(head, f".{name}.tmp-{uuid.uuid4().hex[:12]}")


def write_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write ``data`` under a temp name in ``fs`` and move it onto ``path``."""
    tmp = temp_name(path)
    with fs.open_output_stream(tmp) as out:
        out.write(data)
    fs.move(tmp, path)


def write_bytes(location: str, data: bytes) -> None:
    """Write a file: temp file + rename on a local disk, one upload elsewhere."""
    fs, path = resolve(location)
    if isinstance(fs, pafs.LocalFileSystem):
        write_bytes_atomic(path, data)
        return
    with fs.open_output_stream(path) as out:
        out.write(data)


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode())


def read_bytes(location: str) -> bytes | None:
    """The file's bytes, or None when it is missing or unreadable."""
    fs, path = resolve(location)
    try:
        with fs.open_input_stream(path) as src:
            return src.read()
    except (OSError, ValueError):  # missing (FileNotFoundError/OSError, per filesystem)
        return None


def read_text(location: str) -> str | None:
    """The file as UTF-8 text, or None when it is missing, unreadable or not UTF-8."""
    data = read_bytes(location)
    try:
        return None if data is None else data.decode()
    except UnicodeDecodeError:
        return None


def sha256(fs: pafs.FileSystem, path: str) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks."""
    digest = hashlib.sha256()
    with fs.open_input_stream(path) as src:
        while chunk := src.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def list_names(location: str, *, folders: bool = False) -> list[str]:
    """Sorted names of the files (or, with ``folders``, the folders) directly in ``location``;
    empty when it is missing or not a folder."""
    fs, path = resolve(location)
    kind = pafs.FileType.Directory if folders else pafs.FileType.File
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (OSError, ValueError):
        return []
    return sorted(i.base_name for i in infos if i.type == kind)


def delete_dir(location: str) -> None:
    fs, path = resolve(location)
    fs.delete_dir(path)


def copy_out(location: str, dest: Path) -> None:
    """Copy a file to the local path ``dest`` (atomically); FileNotFoundError if it is missing."""
    fs, path = resolve(location)
    with fs.open_input_stream(path) as stream, atomic_path(dest) as tmp, open(tmp, "wb") as out:
        while chunk := stream.read(1 << 20):
            out.write(chunk)


def copy_tree(location: str, dest_fs: pafs.FileSystem, dest_path: str) -> None:
    """Copy the folder at ``location`` into ``dest_path`` of ``dest_fs`` (created if needed)."""
    fs, path = resolve(location)
    dest_fs.create_dir(dest_path, recursive=True)
    pafs.copy_files(path, dest_path, source_filesystem=fs, destination_filesystem=dest_fs)


def check_storage(storage: str) -> str:
    """Make sure ``storage`` is writable by writing and removing a probe file.

    Returns the normalised storage (absolute path, or the URI); ClusterError names it.
    """
    fs, path = resolve(storage)
    probe = join(path, f".fxdist-probe-{socket.gethostname()}-{os.getpid()}")
    try:
        fs.create_dir(path, recursive=True)
        with fs.open_output_stream(probe) as out:
            out.write(b"ok")
        fs.delete_file(probe)
    except (OSError, ValueError, NotImplementedError) as exc:
        raise ClusterError(f"storage {storage} is not writable: {exc}") from exc
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    return storage.rstrip("/")


def swap_in(fs: pafs.FileSystem, stage: str, root: str, keep_from_old=lambda name: False,
            error: type[FxdistError] = FxdistError) -> None:
    """Put the complete folder ``stage`` in place of ``root``. Entries of the old ``root`` for which
    ``keep_from_old(name)`` holds move into the new one first; the old folder goes last, so a
    failure before the final move leaves it whole."""
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        fs.move(stage, root)
        return
    if info.type != pafs.FileType.Directory:
        raise error(f"{root}: exists and is not a folder; choose another destination")
    for entry in fs.get_file_info(pafs.FileSelector(root)):
        if keep_from_old(entry.base_name):
            fs.move(entry.path, posixpath.join(stage, entry.base_name))
    old = f"{stage}.old"
    fs.move(root, old)  # between these two moves a reader finds no folder, never a mixed one
    fs.move(stage, root)
    fs.delete_dir(old)
