"""How the command line reports a library error: its message, the notes added on its way
up (e.g. which layer of a network raised it), and the flags that set what fixes it."""

from __future__ import annotations

import argparse


def flags_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's destination and its flag, e.g. `{"batch_size": "--batch-size"}`."""
    return {
        action.dest: action.option_strings[-1]
        for action in parser._actions  # argparse keeps no public list of its options
        if action.option_strings
    }


def describe(error: BaseException, flags: dict[str, str]) -> str:
    """`error`'s message and notes, then the flags for the settings it names (the
    `settings` of a `fnn.errors.FnnError`, each flag once)."""
    text = "\n".join([str(error), *getattr(error, "__notes__", ())])
    names = getattr(error, "settings", ())
    given = list(dict.fromkeys(flags[name] for name in names if name in flags))
    if given:
        text += f" ({'set with ' + ' or '.join(given)})"
    return text
