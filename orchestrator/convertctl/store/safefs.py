"""File access inside a folder whose contents someone else may have shaped:
a run directory after a stage ran (a stage's code may be hostile: a trusted
pickle, --arch code, a converter), a cache entry, an output folder.

Names that come from such places (a stage's result, a cache entry, a report)
are data: `rel` checks that one stays inside its folder. Nothing here
follows a symbolic link: every folder on the way is opened with O_NOFOLLOW
from the one above it (openat), so a link a stage planted, even one swapped
in between a check and a use, is never written or read through. Only regular
files and folders are accepted; a link, FIFO or device is refused with
Unsafe, which names the place."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
CHUNK = 1 << 20


class Unsafe(OSError):
    """A name that leaves its folder, or a link or special file where a
    regular file or folder belongs. str() and .strerror are the message."""

    def __init__(self, message: str, path: str | Path | None = None):
        super().__init__(errno.EPERM, message, None if path is None else str(path))

    def __str__(self) -> str:
        return self.strerror or ""


def rel(name: object, what: str = "a path") -> str:
    """A relative POSIX path that stays inside its folder, as a string; else Unsafe."""
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name:
        raise Unsafe(f"{what} {name!r} is not a relative path")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts) or not path.parts:
        raise Unsafe(f"{what} {name!r} leaves its folder")
    return path.as_posix()


def _refuse(path: Path | str, mode: int) -> Unsafe:
    kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file or folder"
    return Unsafe(f"{path} is {kind}; refused (nothing is read or written through it)", path)


@contextmanager
def _parent_fd(root: Path, name: str, create: bool) -> Iterator[tuple[int, str]]:
    """(fd of the folder holding name, name's last part), every folder on the
    way opened without following links (and made, with create)."""
    parts = PurePosixPath(rel(name)).parts
    fd = os.open(root, DIR_FLAGS)
    try:
        for part in parts[:-1]:
            if create:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    raise _refuse(root / name, st.st_mode) from None
                raise
            os.close(fd)
            fd = nxt
        yield fd, parts[-1]
    finally:
        os.close(fd)


def kind(root: Path, name: str) -> str:
    """'file', 'dir', '' (nothing there), or Unsafe for a link or special file."""
    try:
        with _parent_fd(root, name, create=False) as (fd, last):
            st = os.stat(last, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return ""
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    raise _refuse(root / name, st.st_mode)


def is_file(root: Path, name: str) -> bool:
    try:
        return kind(root, name) == "file"
    except Unsafe:
        return False


@contextmanager
def open_read(root: Path, name: str):
    """A regular file under root, opened for reading without following links."""
    with _parent_fd(root, name, create=False) as (fd, last):
        try:
            handle = os.open(last, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _refuse(root / name, stat.S_IFLNK) from None
            raise
    st = os.fstat(handle)
    if not stat.S_ISREG(st.st_mode):
        os.close(handle)
        raise _refuse(root / name, st.st_mode)
    os.set_blocking(handle, True)
    with os.fdopen(handle, "rb") as f:
        yield f


def read_bytes(root: Path, name: str) -> bytes:
    with open_read(root, name) as f:
        return f.read()


def read_text(root: Path, name: str) -> str:
    return read_bytes(root, name).decode("utf-8")


@contextmanager
def open_write(root: Path, name: str, append: bool = False):
    """A file under root for writing (folders made as needed), never through
    a link: an existing name that is not a regular file is refused."""
    with _parent_fd(root, name, create=True) as (fd, last):
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
        try:
            handle = os.open(last, flags | os.O_NONBLOCK, 0o644, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
                st = os.stat(last, dir_fd=fd, follow_symlinks=False)
                raise _refuse(root / name, st.st_mode) from None
            raise
    st = os.fstat(handle)
    if not stat.S_ISREG(st.st_mode):
        os.close(handle)
        raise _refuse(root / name, st.st_mode)
    os.set_blocking(handle, True)
    with os.fdopen(handle, "ab" if append else "wb") as f:
        yield f


def write_atomic(root: Path, name: str, data: bytes | str) -> None:
    """Write whole or not at all: a new temporary name beside it (created
    exclusively, so no planted link is followed), then renamed over name."""
    blob = data.encode() if isinstance(data, str) else data
    with _parent_fd(root, name, create=True) as (fd, last):
        tmp = f".{last}.{uuid.uuid4().hex[:8]}.tmp"
        handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
        try:
            with os.fdopen(handle, "wb") as f:
                f.write(blob)
            try:
                st = os.stat(last, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    raise _refuse(root / name, st.st_mode)
            except FileNotFoundError:
                pass
            os.replace(tmp, last, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a planted link itself, never its target
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=fd)
            except OSError:
                pass
            raise


def walk_files(root: Path, under: str = "", skip: tuple = ()) -> list[str]:
    """Every regular file below root/under as a path relative to root, sorted;
    a link or special file anywhere below is refused (Unsafe). Top-level
    names in skip are left out (a local stage's scratch home)."""
    start = root / under if under else root
    out: list[str] = []

    def visit(folder: Path, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if not prefix and entry.name in skip:
                    continue
                mode = entry.stat(follow_symlinks=False).st_mode
                name = f"{prefix}{entry.name}"
                if stat.S_ISDIR(mode):
                    visit(Path(entry.path), name + "/")
                elif stat.S_ISREG(mode):
                    out.append(name)
                else:
                    raise _refuse(Path(entry.path), mode)

    st = os.lstat(start)
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(start, st.st_mode)
    visit(start, f"{under}/" if under else "")
    return out


def copy_out(root: Path, name: str, dest: Path) -> None:
    """A file or folder of root copied to dest (a new name the caller owns),
    refusing links and special files anywhere inside."""
    what = kind(root, name)
    if what == "dir":
        dest.mkdir(mode=0o755)
        for sub in walk_files(root, name):
            target = dest / sub[len(name) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            with open_read(root, sub) as src, open(target, "xb") as out:
                shutil.copyfileobj(src, out, CHUNK)
        return
    if what != "file":
        raise FileNotFoundError(errno.ENOENT, "no such file", str(root / name))
    with open_read(root, name) as src, open(dest, "xb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def make_dirs(root: Path, name: str) -> Path:
    """root/name made folder by folder, none of them through a link."""
    with _parent_fd(root, f"{rel(name)}/leaf", create=True):  # every folder above "leaf" is made
        pass
    return root / name


def remove_file(root: Path, name: str) -> None:
    """Unlink root/name (a link is removed itself, never its target)."""
    with _parent_fd(root, name, create=False) as (fd, last):
        os.unlink(last, dir_fd=fd)
