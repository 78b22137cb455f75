"""Language models: a GPT whose every backward is written by hand (`gpt`, built from
`gpt_block`s, its head tied to the token embedding) and sampling from it (`generate`)."""

from fnn.lm.block import RECOMPUTE, gpt_block
from fnn.lm.gpt import HEADS, GPTResiduals, gpt
from fnn.lm.sampling import generate

__all__ = ["HEADS", "RECOMPUTE", "GPTResiduals", "generate", "gpt", "gpt_block"]
