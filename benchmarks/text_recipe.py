"""The text recipe end to end, as the README shows it: write the corpus (the Python
standard library's own sources, `examples/stdlib_text.py`), `fnn train --dataset text`,
then `fnn sample`; records the validation bits per byte per epoch, the wall time of the
whole training command and the sample.

    python benchmarks/text_recipe.py [--bytes 1000000] [--epochs N]

Writes benchmarks/results/text_recipe.json (and keeps the run in runs/text-recipe/).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fit_overhead import machine

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ["--prompt", "def ", "--tokens", "300", "--temperature", "0.8", "--top-k", "40",
          "--seed", "0"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bytes", type=int, default=3_000_000)
    parser.add_argument("--epochs", type=int, default=None, help="(default: the recipe's)")
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "text-recipe")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "text_recipe.json"
    )
    args = parser.parse_args()
    fnn = [str(Path(sys.executable).parent / "fnn")]  # the installed command
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "stdlib.txt"
        subprocess.run([sys.executable, str(ROOT / "examples" / "stdlib_text.py"), str(corpus),
                        "--bytes", str(args.bytes)], check=True)  # fmt: skip
        train = [*fnn, "train", "--dataset", "text", "--text", str(corpus), "--out",
                 str(args.run), "--overwrite", "--no-progress"]  # fmt: skip
        train += [] if args.epochs is None else ["--epochs", str(args.epochs)]
        start = time.perf_counter()
        subprocess.run(train, check=True)
        train_s = time.perf_counter() - start
    sample = subprocess.run([*fnn, "sample", "--checkpoint", str(args.run), *SAMPLE],
                            check=True, capture_output=True, text=True)  # fmt: skip
    metrics = json.loads((args.run / "metrics.json").read_text())
    result = {
        "machine": machine(),
        "corpus": f"the first {args.bytes} bytes of the Python standard library's top-level "
        "sources, sorted by name (examples/stdlib_text.py)",
        "commands": {
            "train": "fnn train --dataset text --text stdlib.txt"
            + ("" if args.epochs is None else f" --epochs {args.epochs}"),
            "sample": "fnn sample --checkpoint DIR " + " ".join(SAMPLE),
        },
        "network": metrics["network"],
        "num_params": metrics["num_params"],
        "config": metrics["config"],
        "train_command_s": train_s,
        "fit_wall_s": metrics["wall_s"],
        "test_bits_per_byte": metrics["test_bits_per_byte"],
        "history": {
            k: metrics["history"][k] for k in ("train_loss", "test_loss", "test_bits_per_byte")
        },  # fmt: skip
        "sample": sample.stdout,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    epochs = len(result["history"]["test_loss"])
    print(f"validation bits per byte {result['test_bits_per_byte']:.3f} after {epochs} "
          f"epochs; fnn train took {train_s:.0f} s")  # fmt: skip
    print(sample.stdout)


if __name__ == "__main__":
    main()
