"""Writes a text corpus every machine with Python has: the Python standard library's own
source files, concatenated (sorted by name, up to --bytes), for `fnn train --dataset text`.

    python examples/stdlib_text.py stdlib.txt          # about 1 MB of Python source
    fnn train --dataset text --text stdlib.txt --out runs/text
    fnn sample --checkpoint runs/text --prompt "def "
"""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path


def stdlib_text(limit: int) -> bytes:
    """The standard library's top-level `.py` files, sorted by name, concatenated until
    `limit` bytes (the last file cut)."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for path in sorted(folder.glob("*.py")):
        data = path.read_bytes()
        parts.append(data)
        size += len(data)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the file to write")
    parser.add_argument("--bytes", type=int, default=1_000_000, help="(default: 1 000 000)")
    args = parser.parse_args()
    data = stdlib_text(args.bytes)
    args.out.write_bytes(data)
    print(f"wrote {len(data)} bytes of Python standard library source to {args.out}")


if __name__ == "__main__":
    main()
