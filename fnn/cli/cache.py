"""The compilation cache the commands use: JAX's persistent cache in the user's cache
directory, so that a repeated `fnn train`, `fnn check` or `fnn bench` loads what it
compiled before instead of compiling it again.

`FNN_CACHE_DIR=DIR` moves it; `FNN_CACHE_DIR=off` turns it off. The default is
`$XDG_CACHE_HOME/fnn/jax`, else `~/.cache/fnn/jax`. Programs are cached however short
their compile (JAX's default keeps only those over a second, and most of fnn's compile in
less).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "FNN_CACHE_DIR"
OFF = ("off", "none", "0", "")


def cache_dir() -> Path | None:
    """Where the commands cache compiled programs, or None when turned off."""
    chosen = os.environ.get(ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in OFF else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fnn" / "jax"


def use_compilation_cache() -> Path | None:
    """Points JAX's persistent compilation cache at `cache_dir()`; returns it (None when
    off). A directory that cannot be made leaves the cache off rather than failing."""
    import jax

    path = cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
