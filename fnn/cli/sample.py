"""`fnn sample`: text from a language model trained by `fnn train --dataset text`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fnn.cli.messages import flags_of
from fnn.cli.train_flags import non_negative_float, non_negative_int, positive_int
from fnn.errors import SettingError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sample",
        help="generate text from a language model trained with fnn train --dataset text",
        description=(
            "Continue --prompt by --tokens bytes drawn from the gpt saved in --checkpoint "
            "DIR (the --out of `fnn train --dataset text --model gpt`), in one compiled "
            "loop with a key-value cache. The same seed gives the same text."
        ),
        epilog="exit codes: 0 sampled; 1 a bug (with its traceback); 2 bad usage or checkpoint.",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="DIR",
                        help="the run directory holding checkpoint.npz")  # fmt: skip
    parser.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    parser.add_argument("--tokens", type=positive_int, default=300, metavar="N",
                        help="bytes to generate (default: 300)")  # fmt: skip
    parser.add_argument("--temperature", type=non_negative_float, default=0.8, metavar="T",
                        help="0: greedy; 1: the model's distribution (default: 0.8)")  # fmt: skip
    parser.add_argument("--top-k", type=non_negative_int, default=40, metavar="K",
                        help="draw among the K likeliest bytes (0: all; default: 40)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="the draws' seed (default: 0)")
    parser.add_argument(
        "--no-kv-cache",
        action="store_true",
        help="run the whole window each step instead (the same text, slower)",
    )
    parser.set_defaults(run=run, flags=flags_of(parser))


def run(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from fnn import experiment
    from fnn.lm import generate

    prompt = args.prompt.encode("utf-8")  # errors (FnnError) exit 2 in fnn.cli.main
    if not prompt:
        raise SettingError("--prompt is empty; expected at least one character")
    model = experiment.load_model(args.checkpoint)
    context = model.config.context
    if len(prompt) > context:
        raise SettingError(
            f"--prompt is {len(prompt)} bytes, longer than the model's context of "
            f"{context}; expected at most {context} bytes"
        )
    start = time.perf_counter()
    ids = generate(
        model.net, model.params, np.frombuffer(prompt, np.uint8).astype(np.int32),
        heads=model.config.heads, tokens=args.tokens, key=jax.random.PRNGKey(args.seed),
        temperature=args.temperature, top_k=args.top_k or None,
        kv_cache=not args.no_kv_cache,
    )  # fmt: skip
    text = bytes(np.asarray(ids, np.uint8).tolist()).decode("utf-8", errors="replace")
    seconds = time.perf_counter() - start
    print(text)
    print(
        f"({args.tokens} bytes in {seconds:.1f} s, compile included; model of epoch "
        f"{model.epoch} from {args.checkpoint})",
        file=sys.stderr,
    )
    return 0
