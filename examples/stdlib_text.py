"""Writes a text corpus every machine with Python has: the Python standard library's own
source files, concatenated in a seeded random order (up to --bytes), for `fnn train
--dataset text`. The order is shuffled so that the validation split (the file's end)
holds the same mix of modules as the train split, not the alphabet's last ones.

    python examples/stdlib_text.py stdlib.txt          # 3 MB of Python source
    fnn train --dataset text --text stdlib.txt --out runs/text
    fnn sample --checkpoint runs/text --prompt "def "
"""

from __future__ import annotations

import argparse
import random
import sysconfig
from pathlib import Path


def stdlib_text(limit: int, seed: int = 0) -> bytes:
    """The standard library's top-level `.py` files, in an order shuffled with `seed`,
    concatenated until `limit` bytes (the last file cut)."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(folder.glob("*.py"))
    random.Random(seed).shuffle(paths)
    parts, size = [], 0
    for path in paths:
        data = path.read_bytes()
        parts.append(data)
        size += len(data)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the file to write")
    parser.add_argument("--bytes", type=int, default=3_000_000, help="(default: 3 000 000)")
    parser.add_argument("--seed", type=int, default=0, help="the files' order (default: 0)")
    args = parser.parse_args()
    data = stdlib_text(args.bytes, args.seed)
    args.out.write_bytes(data)
    print(f"wrote {len(data)} bytes of Python standard library source to {args.out}")


if __name__ == "__main__":
    main()
