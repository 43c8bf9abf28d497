"""File safety for everything soi writes: no user file is lost, replaced by accident or left half
written.

* :func:`check_output_file`: before any work, whether a path can take an output file. A folder,
  a block device, a socket or a dangling symbolic link is refused; the input is never the output
  (compared by device and inode, so also through symbolic and hard links); an existing file needs
  ``force``; the folder must let soi create a file in it (tried, so a read-only folder, a read-only
  file system or a file in the way is found before the work starts).
* :func:`write_file`: writes to a temporary file in the target's folder and renames it over the
  target, so an interrupted write never leaves a broken file. The rename happens only over a
  regular file: a symbolic link is followed (the link stays, the file it names is replaced); a
  character device or a FIFO (``/dev/stdout``, ``/dev/null``, a named pipe) is written through,
  never replaced. A new file gets the mode the umask gives (``0o666 & ~umask``), a replaced file
  keeps its mode.
* :func:`check_output_folder`: the same checks for a folder that soi writes files into.
* :class:`WrittenFiles`: the record of the files and folders soi wrote in a folder, kept before each
  is written, so that a rebuild removes exactly those and nothing a user put there.
* :func:`prepare_data_folder` / :func:`finish_data_folder`: the life of a generated data set's
  folder (``soi generate``, ``soi scenes generate``, ``soi video generate``): what an earlier set,
  a user's files or an interrupted run there mean for a new one, and the manifest written last.
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "GENERATING", "WrittenFiles", "check_output_file", "check_output_folder", "finish_data_folder", "prepare_data_folder",
    "read_checkpoint_file", "read_manifest", "write_file", "writes_to_stdout",
]  # fmt: skip

PathLike = str | os.PathLike
Content = bytes | Callable[[BinaryIO], None]
"""What :func:`write_file` writes: bytes, or a function that writes into a binary file object."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
    ):  # fmt: skip
        if test(mode):
            return name
    return "a file"


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat`` (links followed), ``None`` if nothing is there; a file in the way of the path is an error."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)
        raise NotADirectoryError(errno.ENOTDIR, f"{path}: {blocker} is a file, not a folder") from None


def _nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (``.`` or ``/`` at the latest); it must be a folder."""
    p = path
    while (st := _stat(p)) is None:
        p = p.parent
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, f"{path}: {p} is {_kind(st.st_mode)}, not a folder")
    return p


def _probe(folder: Path) -> None:
    """Create and remove a file in ``folder``: the only check that sees permissions, ACLs and
    read-only file systems alike (``os.access`` answers yes to root)."""
    probe = folder / f".soi-probe-{secrets.token_hex(6)}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as err:
        raise OSError(err.errno, f"cannot create files in {folder}: {err.strerror}") from None
    os.unlink(probe)


def _same_file(st: os.stat_result, inputs: Iterable[PathLike]) -> PathLike | None:
    for source in inputs:
        try:
            if os.path.samestat(st, os.stat(source)):
                return source
        except OSError:
            continue
    return None


def _check_path(path: PathLike, what: str) -> Path:
    if not os.fspath(path):
        raise ValueError(f"the {what} path is empty")
    return Path(path)


def check_output_file(path: PathLike, *, force: bool = False, inputs: Iterable[PathLike] = ()) -> Path:
    """Check that an output file can be written at ``path``; returns the path :func:`write_file`
    renames over (a symbolic link's target, so the link survives) or writes through (a device or
    FIFO).

    Raises:
        IsADirectoryError: ``path`` is a folder.
        NotADirectoryError: a file stands where a folder of the path should be.
        ValueError: ``path`` is one of ``inputs`` (also through links), a block device, a socket
            or a symbolic link to nothing.
        FileExistsError: ``path`` is an existing file and ``force`` is false.
        PermissionError (an ``OSError``): no file can be created in its folder.
    """
    path = _check_path(path, "output")
    st = _stat(path)
    if st is None:
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; soi does not write through it")
        _probe(_nearest_existing(path.parent))
        return path
    source = _same_file(st, inputs)
    if source is not None:
        if os.path.abspath(source) == os.path.abspath(path):
            raise ValueError(f"the output {path} is the input file; choose another output")
        raise ValueError(f"the output {path} is the input {source} (the same file through a link); choose another output")
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, f"the output {path} is a folder; give the name of a file to write")
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or _is_stdout(st):
        # Written through: nothing stored is replaced (a file stdout is redirected to was made
        # for this output by the shell).
        return path
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"the output {path} is {_kind(st.st_mode)}; soi writes files, character devices and FIFOs only")
    if not force:
        raise FileExistsError(errno.EEXIST, f"{path} exists; pass --force to overwrite it")
    target = Path(os.path.realpath(path))
    _probe(target.parent)
    return target


def check_output_folder(path: PathLike) -> Path:
    """Check that ``path`` is a folder soi can create files in, or can be made one (its nearest
    existing ancestor is a folder soi can write in). Creates nothing.

    Raises:
        NotADirectoryError: ``path`` (or an ancestor) is a file or another non-folder.
        PermissionError (an ``OSError``): no file can be created there.
    """
    path = _check_path(path, "output folder")
    st = _stat(path)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, f"the output folder {path} is {_kind(st.st_mode)}; give a folder")
    _probe(_nearest_existing(path))
    return path


def _is_stdout(st: os.stat_result) -> bool:
    try:
        return os.path.samestat(st, os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):  # no real stdout (captured, closed)
        return False


def writes_to_stdout(path: PathLike) -> bool:
    """Whether ``path`` names this process's standard output (``/dev/stdout``, ``/dev/fd/1``, or
    the file or pipe it is connected to), where a command's report would mix with the data."""
    try:
        return _is_stdout(os.stat(path))
    except OSError:
        return False


def write_file(path: PathLike, content: Content, *, force: bool = False, inputs: Iterable[PathLike] = ()) -> Path:
    """Write ``content`` to ``path`` safely (see the module docstring); returns the path written.

    ``content`` is bytes or a function that writes into a binary file object (seekable: a real
    file, or a memory buffer when the target is a device or FIFO). The checks of
    :func:`check_output_file` are made again here, so the state at the time of writing counts.
    Missing parent folders are created.
    """
    target = check_output_file(path, force=force, inputs=inputs)
    st = _stat(target)
    if st is not None and (not stat.S_ISREG(st.st_mode) or _is_stdout(st)):
        if callable(content):  # a stream cannot seek back to fix a header: render in memory first
            buffer = io.BytesIO()
            content(buffer)
            content = buffer.getvalue()
        with open(target, "wb") as stream:
            stream.write(content)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
    # os.open with 0o666 lets the kernel apply the umask (and a default ACL), as for any new file.
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            if st is not None:
                # Replacing a file: its new data must be on disk before the rename drops the old one.
                f.flush()
                os.fsync(f.fileno())
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _signature(path: Path) -> list[int] | None:
    """Device, inode, size and modification time of the file at ``path`` (not followed if a link)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns] if stat.S_ISREG(st.st_mode) else None


class WrittenFiles:
    """The record of what soi wrote in ``folder``: ``folder/.soi-written``, JSON lines.

    A path is recorded *before* it is made (:meth:`claim`), so even an interrupted run leaves a
    complete record, and again once written with the file's device, inode, size and modification
    time (:meth:`written`). A file counts as soi's only while it still matches that: one a user
    wrote over, or put under a recorded name, is not soi's. :meth:`remove` deletes soi's files and
    the recorded folders that are left empty, and nothing else::

        record = WrittenFiles(out)
        path = record.claim("clean.wav", force=force)  # before the work: refused here
        write_wav(path, wave, rate, overwrite=True)
        record.written("clean.wav")
    """

    NAME = ".soi-written"

    def __init__(self, folder: PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._entries: dict[str, list[int] | None] | None = None

    def entries(self) -> dict[str, list[int] | None]:
        """Recorded path -> the signature it was written with (``None``: claimed, or a folder)."""
        if self._entries is None:
            self._entries = {}
            try:
                lines = self.path.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            for line in lines:
                try:
                    value = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by an interruption
                if isinstance(value, str):
                    self._entries.setdefault(value, None)
                elif isinstance(value, dict) and isinstance(value.get("path"), str):
                    self._entries[value["path"]] = value.get("id")
        return self._entries

    def _add(self, line: str | dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")

    def owns(self, relative: str) -> bool:
        """Whether ``folder/relative`` is a file soi wrote and nobody changed since."""
        written = self.entries().get(relative)
        return written is not None and written == _signature(self.folder / relative)

    def mkdir(self, relative: str) -> Path:
        """Make ``folder/relative`` and its missing parents, recording each one made."""
        missing = [p for p in (Path(relative), *Path(relative).parents) if str(p) != "." and not (self.folder / p).is_dir()]
        for p in reversed(missing):
            name = p.as_posix() + "/"
            self._add(name)
            self.entries()[name] = None
            (self.folder / p).mkdir(exist_ok=True)
        return self.folder / relative

    def claim_all(self, relatives: Iterable[str], *, force: bool = False) -> list[Path]:
        """:meth:`claim` each of ``relatives``, all checked before any is recorded: one refusal
        leaves the folder as it was."""
        relatives = list(relatives)
        for relative in relatives:
            self._check_free(relative, force)
        return [self.claim(relative, force=force) for relative in relatives]

    def _check_free(self, relative: str, force: bool) -> None:
        path = self.folder / relative
        if os.path.lexists(path) and not force and not self.owns(relative):
            raise FileExistsError(errno.EEXIST, f"{path} exists and soi did not write it; pass --force to replace it")

    def claim(self, relative: str, *, force: bool = False) -> Path:
        """Record that soi is about to write ``folder/relative`` (its folders are made) and return
        that path, to be written with ``overwrite=True`` and then passed to :meth:`written`. An
        existing file there that is not soi's (:meth:`owns`) is replaced only with ``force``:
        otherwise ``FileExistsError``, and nothing is recorded."""
        self._check_free(relative, force)
        self.mkdir(Path(relative).parent.as_posix())
        if relative not in self.entries():
            self._add(relative)
            self.entries()[relative] = None
        return self.folder / relative

    def written(self, relative: str) -> None:
        """Record the file soi has just written at ``folder/relative`` as soi's."""
        signature = _signature(self.folder / relative)
        self._add({"path": relative, "id": signature})
        self.entries()[relative] = signature

    def _inside(self, relative: str) -> Path | None:
        """``folder/relative`` if it stays inside the folder (a hand-edited record cannot reach out)."""
        rel = Path(relative.rstrip("/"))
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            return None
        return self.folder / rel

    def remove(self, also: Iterable[str] = ()) -> int:
        """Delete soi's files (:meth:`owns`; and ``also``: files a set made before this record
        existed lists, by name), then the recorded folders left empty, then the record; returns
        the files deleted. A recorded name that is now a link, a folder, or a file someone
        changed stays."""
        removed = 0
        for rel in [*(r for r in self.entries() if self.owns(r)), *also]:
            path = self._inside(rel)
            if path is not None and _signature(path) is not None:
                path.unlink()
                removed += 1
        folders = [p for rel in self.entries() if rel.endswith("/") and (p := self._inside(rel)) is not None]
        for path in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            try:
                if not path.is_symlink():
                    path.rmdir()  # only when empty: a user's file in it keeps it
            except OSError:
                pass
        self.path.unlink(missing_ok=True)
        self._entries = {}
        return removed


GENERATING = ".soi-generating"
"""Present in a data set's folder while the set is being written (it holds the set's parameters as
JSON); removed when the set is complete."""


def read_manifest(folder: PathLike, holds: str, kind: type) -> dict[str, Any] | None:
    """``folder/manifest.json`` if it is a data set's manifest (a JSON object whose ``holds`` is a
    ``kind``), else ``None`` (missing, unreadable or something else)."""
    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get(holds), kind) else None


def _changes(before: dict[str, Any], now: dict[str, Any]) -> str:
    scalar = (str, int, float, bool, type(None))
    shown = [
        f"{k} {before.get(k)} -> {now[k]}" if isinstance(before.get(k), scalar) and isinstance(now[k], scalar) else f"{k} differ"
        for k in now
        if before.get(k) != now[k]
    ]  # fmt: skip
    return ", ".join(shown) or "unknown parameters"


def prepare_data_folder(
    folder: PathLike, params: dict[str, Any], manifest: dict[str, Any] | None, *, overwrite: bool,
    planned: Iterable[str] = (), legacy: Iterable[str] = (),
) -> WrittenFiles:  # fmt: skip
    """Make way for a data set made with ``params`` in ``folder``, before any of it is written.

    An earlier set of soi's there (its ``manifest``, :func:`read_manifest`; the record of what soi
    wrote; or the :data:`GENERATING` marker of an interrupted run) is removed, only the files soi
    wrote (where the folder has no record, a set made before records existed: the files of
    ``legacy``, those its manifest lists), and if it was made with other parameters only with
    ``overwrite``. A folder that holds anything else, or files that
    soi did not write in the ``planned`` places of the new set, is refused unless ``overwrite``, and
    then left as it is. The marker is written and recorded, so that a set interrupted at any point is
    recognised as soi's. Returns the folder's record, to claim each file of the set with.

    Raises:
        FileExistsError: what is there needs ``overwrite`` (the message says what and why).
    """
    folder = Path(folder)
    record = WrittenFiles(folder)
    try:
        started = json.loads((folder / GENERATING).read_text())
    except (OSError, json.JSONDecodeError):
        started = None
    ours = manifest is not None or bool(record.entries()) or started is not None
    before = manifest.get("params") if manifest is not None else started
    if ours and before != params and not overwrite:
        raise FileExistsError(
            errno.EEXIST,
            f"{folder} holds a soi data set made with other parameters ({_changes(before or {}, params)}); "
            "pass --force (overwrite=True) to replace it (of what is there, only the files soi wrote are removed, and files "
            "where the new set goes are replaced), or choose another folder",
        )
    others = [p.name for p in sorted(folder.iterdir()) if p.name not in (WrittenFiles.NAME, GENERATING)] if folder.is_dir() else []
    if not ours and others and not overwrite:
        raise FileExistsError(
            errno.EEXIST,
            f"{folder} is not empty ({', '.join(others[:4])}{', ...' if len(others) > 4 else ''}) and holds no soi data set; "
            "choose an empty or new folder, or pass --force (overwrite=True) to write the set beside what is there",
        )
    legacy = [] if record.entries() else list(legacy)
    in_the_way = [f for f in planned if os.path.lexists(folder / f) and not record.owns(f) and f not in legacy]
    if in_the_way and not overwrite:
        raise FileExistsError(
            errno.EEXIST,
            f"{folder}: {len(in_the_way)} file(s) where the data set goes were not written by soi (or were changed since: "
            f"{', '.join(in_the_way[:3])}{', ...' if len(in_the_way) > 3 else ''}); move them, or pass --force to replace them",
        )
    record.remove(also=legacy)
    write_file(record.claim(GENERATING, force=True), json.dumps(params).encode(), force=True)
    record.written(GENERATING)
    return record


def finish_data_folder(record: WrittenFiles, manifest: dict[str, Any], *, overwrite: bool) -> None:
    """Complete the set :func:`prepare_data_folder` began: ``manifest.json`` is written last (its
    presence marks a complete set) and the :data:`GENERATING` marker removed."""
    write_file(record.claim("manifest.json", force=overwrite), json.dumps(manifest, indent=1).encode(), force=True)
    record.written("manifest.json")
    (record.folder / GENERATING).unlink(missing_ok=True)


def read_checkpoint_file(path: PathLike, kind: str, fmt: str, keys: Sequence[str], map_location: str = "cpu") -> dict:
    """The payload of the soi ``kind`` checkpoint (``"speech"``, ``"scene"``) at ``path``: a dict
    saved by ``torch.save`` whose ``"format"`` is ``fmt`` and which holds every one of ``keys``.

    Raises:
        FileNotFoundError, IsADirectoryError: no file at ``path``.
        ValueError: not a readable checkpoint, another format, or missing fields.
    """
    import torch  # here: the rest of this module serves commands that never load a model

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"the checkpoint {path} is a folder; give the .pt file (e.g. {path / 'best.pt'})")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise ValueError(f"{path} is not a readable soi checkpoint: {' '.join(str(err).split())[:200]}") from err
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not a soi {kind} checkpoint (expected format {fmt!r}, found {found!r})")
    missing = [k for k in keys if k not in payload]
    if missing:
        raise ValueError(f"{path}: the checkpoint has no {', '.join(missing)} (damaged, or written by other software)")
    return payload
