"""Atomic writes to a local path, a shared file system or an object-store URI.

Distributed runs write their outputs where every node can see them: a shared file
system path (NFS, Lustre, ...) or an object-store URI that pyarrow's file systems
understand (``s3://bucket/prefix``, ``gs://...``, ``abfs://...``, ``hdfs://...``;
other fsspec protocols are reached through fsspec when it is installed).

A reader must never see half of a file, so that a crashed or retried task cannot leave
a truncated run behind:

- local paths (and ``file://``): write a hidden temporary file in the destination
  directory, flush it to disk, then ``os.replace`` it onto the final name (atomic on
  POSIX within one file system);
- object stores: write straight to the final key; an object becomes visible only when
  its upload completes, so readers see either nothing or the whole object.

Locations are plain strings throughout; ``os.PathLike`` objects are accepted too.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import PurePath
from typing import Any

import numpy as np

from bayes_trainmap.core.errors import BayesTrainmapError

_LOCAL_SCHEMES = ("", "file")

#: Prefix of the hidden temporary files that become files on ``os.replace``; a crashed
#: writer leaves only such files behind, which readers skip and collectors remove.
TEMP_PREFIX = ".tmp-"


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` with the process umask applied (what ``open()`` would create)."""
    current = os.umask(0)
    os.umask(current)
    return mode & ~current


def apply_umask(path: str | os.PathLike[str], mode: int = 0o666) -> None:
    """Give ``path`` the permissions a plain ``open()`` would have (``mkstemp`` makes 0600)."""
    os.chmod(path, umask_mode(mode))


def _scheme(location: str) -> str:
    head, sep, _ = location.partition("://")
    return head.lower() if sep else ""


def is_local(location: str | os.PathLike[str]) -> bool:
    """True for plain paths and ``file://`` URIs (written with temp file + rename)."""
    return _scheme(os.fspath(location)) in _LOCAL_SCHEMES


def local_path(location: str | os.PathLike[str]) -> str:
    """The absolute local path of a plain path or ``file://`` URI.

    Raises
    ------
    ValueError
        If ``location`` is a remote URI.
    """
    location = os.fspath(location)
    if not is_local(location):
        raise ValueError(f"{location!r} is not a local path or file:// URI")
    if _scheme(location) == "file":
        location = location[len("file://") :]
    return os.path.abspath(os.path.expanduser(location))


def join(location: str | os.PathLike[str], *names: str) -> str:
    """Append path components to a local path or a URI (``/``-separated)."""
    location = os.fspath(location)
    if is_local(location) and _scheme(location) == "":
        return os.path.join(location, *names)
    return "/".join([location.rstrip("/"), *names])


def resolve(location: str | os.PathLike[str]) -> tuple[Any, str]:
    """Return ``(pyarrow.fs.FileSystem, path inside it)`` for a remote URI.

    Uses :meth:`pyarrow.fs.FileSystem.from_uri`; schemes pyarrow does not know are
    opened through fsspec (wrapped in :class:`pyarrow.fs.PyFileSystem`) when available.

    Raises
    ------
    BayesTrainmapError
        If neither pyarrow nor fsspec understands the URI.
    """
    import pyarrow
    import pyarrow.fs as pafs

    location = os.fspath(location)
    if is_local(location):
        return pafs.LocalFileSystem(), local_path(location)
    try:
        return pafs.FileSystem.from_uri(location)
    except pyarrow.ArrowInvalid as arrow_error:
        try:
            import fsspec
        except ImportError:
            raise BayesTrainmapError(
                f"unsupported output location {location!r}: {arrow_error} "
                "(install fsspec and the file system's fsspec package to use it)"
            ) from arrow_error
        try:
            fs, path = fsspec.core.url_to_fs(location)
        except (ValueError, ImportError) as fsspec_error:
            raise BayesTrainmapError(
                f"unsupported output location {location!r}: {fsspec_error}"
            ) from fsspec_error
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def make_dirs(location: str | os.PathLike[str]) -> None:
    """Create a directory and its parents (object stores: nothing to create)."""
    if is_local(location):
        os.makedirs(local_path(location), exist_ok=True)
        return
    fs, path = resolve(location)
    fs.create_dir(path, recursive=True)


def write_bytes_atomic(location: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` so that readers see either the old file, nothing, or all of it.

    Parent directories are created as needed. See the module docstring for how each
    kind of location achieves atomicity.
    """
    if not is_local(location):
        fs, path = resolve(location)
        parent = path.rpartition("/")[0]
        if parent:
            fs.create_dir(parent, recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(data)
        return
    path = local_path(location)
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "cannot write a file where a directory is", path)
    # The temporary file lives in the destination directory: os.replace is atomic only
    # within one file system, and a leading dot keeps it out of "*.parquet" listings.
    handle, tmp_path = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{name}.", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        apply_umask(tmp_path)
        os.replace(tmp_path, path)
    except BaseException as error:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
        if isinstance(error, OSError) and error.errno is not None:
            # A full disk or a quota names no file of its own: name the one being written.
            raise OSError(error.errno, error.strerror or str(error), path) from error
        raise


def write_text_atomic(location: str | os.PathLike[str], text: str) -> None:
    """UTF-8 text version of :func:`write_bytes_atomic`."""
    write_bytes_atomic(location, text.encode("utf-8"))


def write_parquet_atomic(location: str | os.PathLike[str], table: Any, **write_options: Any) -> None:
    """Write a :class:`pyarrow.Table` as one Parquet file, atomically.

    The file is serialised in memory first (a run's trajectory is small) and then
    written with :func:`write_bytes_atomic`. ``write_options`` go to
    :func:`pyarrow.parquet.write_table`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **write_options)
    write_bytes_atomic(location, sink.getvalue().to_pybytes())


def read_bytes(location: str | os.PathLike[str]) -> bytes:
    """Read a whole file from a local path or URI.

    Raises
    ------
    FileNotFoundError
        If it does not exist.
    """
    if is_local(location):
        with open(local_path(location), "rb") as stream:
            return stream.read()
    fs, path = resolve(location)
    if not _exists(fs, path):
        raise FileNotFoundError(f"no such file: {os.fspath(location)}")
    with fs.open_input_stream(path) as stream:
        return stream.read()


def exists(location: str | os.PathLike[str]) -> bool:
    """Whether a file or directory exists at ``location``."""
    if is_local(location):
        return os.path.exists(local_path(location))
    fs, path = resolve(location)
    return _exists(fs, path)


def _exists(fs: Any, path: str) -> bool:
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(location: str | os.PathLike[str], suffix: str = "") -> list[str]:
    """Sorted names (not paths) of the files directly under ``location`` ending in ``suffix``.

    Hidden names (a leading dot, e.g. unfinished temporary files) are left out; a
    missing directory has no files.
    """
    if is_local(location):
        directory = local_path(location)
        if not os.path.isdir(directory):
            return []
        names = [
            entry.name
            for entry in os.scandir(directory)
            if entry.is_file() and entry.name.endswith(suffix)
        ]
    else:
        import pyarrow.fs as pafs

        fs, path = resolve(location)
        selector = pafs.FileSelector(path.rstrip("/"), allow_not_found=True, recursive=False)
        names = [
            info.base_name
            for info in fs.get_file_info(selector)
            if info.type == pafs.FileType.File and info.base_name.endswith(suffix)
        ]
    return sorted(name for name in names if not name.startswith("."))


def to_jsonable(value: Any) -> Any:
    """``value`` with numpy/pandas types made plain Python, ready for strict JSON.

    Mappings become ``dict`` with ``str`` keys; sequences, sets and arrays become
    lists; numpy scalars become ``bool``/``int``/``float``; non-finite floats become
    ``None`` (strict JSON has no NaN or Infinity); paths become strings; DataFrames
    become lists of records.
    """
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # a pandas DataFrame
        return to_jsonable(value.to_dict(orient="records"))
    return value


def write_json(location: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` atomically as indented strict JSON (see :func:`to_jsonable`)."""
    write_text_atomic(location, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")
