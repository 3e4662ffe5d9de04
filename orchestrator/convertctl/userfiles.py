"""The user's own files (a model, data arrays, a settings file, a report),
opened for reading as regular files only. A FIFO opened for reading blocks
until someone writes to it, so `--calib fifo` used to hang forever; a
device (/dev/zero, /dev/urandom) never ends. Each is refused with exit 2,
naming the file, before anything reads it: the kind is told by stat, and the
open itself never blocks (O_NONBLOCK, then fstat of what was opened, so a
file swapped for a FIFO between the two is refused too).

Links are followed: these are the user's own paths (a model linked from a
download folder is fine), unlike what a stage leaves (store/safefs.py)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from convertctl.errors import UsageError


def kind_of(mode: int) -> str:
    for test, words in (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return words
    return "a special file"


def check(path: Path | str, what: str, folder_ok: bool = False) -> str:
    """'file' or 'dir' for a path the user named; a UsageError naming it
    when it is missing, unreadable, or anything else (without opening it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if stat.S_ISREG(st.st_mode):
        return "file"
    if folder_ok and stat.S_ISDIR(st.st_mode):
        return "dir"
    raise UsageError(f"{path}: {what} is not a file but {kind_of(st.st_mode)}; refused without reading it")


@contextmanager
def open_regular(path: Path | str, what: str) -> Iterator:
    """A binary file object for a regular file; a UsageError otherwise."""
    check(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # swapped since the stat above
        os.close(fd)
        raise UsageError(f"{path}: {what} is not a file but {kind_of(st.st_mode)}; refused without reading it")
    os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as f:
        yield f


def read_bytes(path: Path | str, what: str, limit: int) -> bytes:
    """A regular file's bytes, refused (not read) beyond limit bytes: a
    settings file or a report of gigabytes is no such file."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise UsageError(f"{path}: {what} of {size / 1e6:.0f} MB; refused (at most {limit / 1e6:.0f} MB)")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{path}: {what} larger than {limit / 1e6:.0f} MB; refused")
    return data
