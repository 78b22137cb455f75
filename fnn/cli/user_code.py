"""Loading a user's function from `FILE.py:FUNCTION` for `fnn bench --model/--layer`, with
an error that says what is wrong and what was expected instead of a traceback."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fnn.errors import UserCodeError  # defined there; importable from here as before


def load_function(spec: str, flag: str) -> Callable[[], Any]:
    """The function `FUNCTION` of the Python file `FILE.py` in `spec` ("FILE.py:FUNCTION").

    The file is run as a module named after it, with its folder first on `sys.path` (so
    it can import its neighbours)."""
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name.isidentifier():
        raise UserCodeError(f"{flag} takes FILE.py:FUNCTION, e.g. my_layers.py:model; got {spec!r}")
    path = Path(path_text)
    if not path.is_file():
        raise UserCodeError(f"{flag}: there is no file {path}")
    module_name = f"fnn_user_{path.stem}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    if loader is None or loader.loader is None:
        raise UserCodeError(f"{flag}: {path} is not a Python file Python can load")
    module = importlib.util.module_from_spec(loader)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        loader.loader.exec_module(module)
    except Exception as error:
        raise UserCodeError(
            f"{flag}: running {path} raised {type(error).__name__}: {error}"
        ) from error
    finally:
        sys.path.pop(0)
    function = getattr(module, name, None)
    if not callable(function):
        found = [
            n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")
        ]
        raise UserCodeError(
            f"{flag}: {path} has no function {name!r}; its functions: {', '.join(found) or 'none'}"
        )
    return function


def call(spec: str, flag: str) -> Any:
    """Loads the function `spec` names and calls it with no arguments."""
    function = load_function(spec, flag)
    try:
        return function()
    except Exception as error:
        raise UserCodeError(f"{flag}: {spec}() raised {type(error).__name__}: {error}") from error


def input_shape(text: str) -> tuple[int, ...]:
    """`--in-shape`'s type: a user layer's input shape without batch, "8" or "6,6,2"."""
    try:
        shape = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(
            f"expected positive ints such as 64 or 8,8,1, got {text!r}"
        )
    return shape
