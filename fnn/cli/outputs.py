"""Output paths, checked before any work: a command must not compute for minutes and then
die for want of a place to write what it found."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fnn.core import SettingError


def check_writable_dir(path: Path, setting: str) -> None:
    """Creates directory `path` (and its parents) and writes a file there; a SettingError
    naming the path and the reason otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".fnn-write-check-"):
            pass
    except OSError as error:
        raise SettingError(
            f"cannot write to {path}: {error.strerror or error} ({error.filename or path})",
            settings=(setting,),
        ) from None


def check_writable_file(path: Path, setting: str) -> None:
    """Checks that file `path` can be written (its directory made and writable, the file
    itself not a directory); a SettingError naming the path otherwise."""
    if path.is_dir():
        raise SettingError(f"cannot write {path}: it is a directory", settings=(setting,))
    check_writable_dir(path.parent, setting)
