"""What the harness runs: the workloads (an MLP, a conv net or a transformer block trained
by SGD on one fixed batch), the grids run per platform, the dtypes, the timed rounds, and
`choose_all`, the check of a list of names against the valid ones."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from fnn.check.report import DEFAULT_RTOL
from fnn.core import choose


@dataclasses.dataclass(frozen=True)
class Workload:
    """An MLP trained by SGD on one fixed batch.

    Attributes:
      name: the key used on the command line and in records.
      in_features: the input width.
      features: the dense layers' widths after the input; activations between them.
      activation: the hidden activation ("sigmoid", "tanh" or "relu").
      loss: "sigmoid_bce" (soft targets in [0, 1], shape (batch, 1)) or "softmax_ce"
        (integer labels, shape (batch,)). Both take logits. A GPT's is "lm_cross_entropy".
      batch: examples per step.
      steps: steps per timed unit (the scan length of the fused implementations).
      learning_rate: the SGD step size.
      w_init: the weight initialiser ("uniform" is the tutorial's U(0, 1) × 0.01).
      description: one line for reports.
      per_example: a per-example-gradients case: only `autodiff` (the batch gradient)
        and `PER_EXAMPLE_IMPLS` run on it, and those run on nothing else.
      image: `(height, width, channels)` for a conv net (`fnn.cnn`): 3×3 SAME
        convolutions `conv` = ((channels, stride), ...) with `activation`, flatten, then
        the dense `features`; `in_features` is then `h·w·c`. Only `JAX_IMPLS` run on it.
      conv: the conv layers of an image workload.
      sequence: `(T, D, heads, ffn)` for a one-block causal transformer on token ids
        (`fnn.transformer`): embedding to width D, positional_embedding, a pre-norm
        residual multi_head_attention(heads, causal) and a residual feed-forward block
        D→ffn→D (gelu), layer_norm and dense(vocab), vocab = `features[-1]`; inputs and
        targets are `(batch, T)` ids. Only `JAX_IMPLS` run on it.
      blocks: with `sequence`, a GPT of this many blocks instead (`fnn.gpt`, context T,
        mlp_ratio ffn/D, its head tied to the token embedding and fused with the loss,
        `fnn.lm_cross_entropy`); 0: the one-block transformer above.
    """

    name: str
    in_features: int
    features: tuple[int, ...]
    activation: str
    loss: str
    batch: int
    steps: int
    learning_rate: float = 0.01
    w_init: str = "glorot_uniform"
    description: str = ""
    per_example: bool = False
    image: tuple[int, int, int] | None = None
    conv: tuple[tuple[int, int], ...] = ()
    sequence: tuple[int, int, int, int] | None = None
    blocks: int = 0

    def gemms(self) -> list[tuple[int, int, int]]:
        """(m, k, n) per layer and example, each layer as a GEMM: a dense layer is
        (1, in, out); a 3×3 SAME convolution is its im2col (out_h·out_w, 9·in, out); a
        sequence model's projections are (T, in, out) and its attention q·kᵀ and P·v are
        (T, D, T) each, summed over the heads (the full T×T, causal mask included)."""
        if self.sequence is not None:
            T, D, _, F = self.sequence
            V = self.features[-1]
            block = [(T, D, 3 * D), (T, D, T), (T, D, T), (T, D, D), (T, D, F), (T, F, D)]
            return block * max(self.blocks, 1) + [(T, D, V)]
        shapes, widths = [], [self.in_features]
        if self.image is not None:
            h, w, c = self.image
            for channels, stride in self.conv:
                h, w = -(-h // stride), -(-w // stride)  # SAME: ⌈n/s⌉
                shapes.append((h * w, 9 * c, channels))
                c = channels
            widths = [h * w * c]
        widths += self.features
        shapes += [(1, a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        return shapes

    @property
    def weights(self) -> int:
        """The number of dense and conv weights (biases excluded); for a sequence model,
        the projections' and the embedding tables' (a GPT's head is its token table)."""
        if self.sequence is not None:
            T, D, _, F = self.sequence
            tables = (1 if self.blocks else 2) * self.features[-1] * D + T * D
            return max(self.blocks, 1) * (3 * D * D + D * D + 2 * D * F) + tables
        return sum(k * n for _, k, n in self.gemms())

    @property
    def params(self) -> int:
        """The number of parameters, weights and biases (and layer_norm scales)."""
        if self.sequence is not None:
            _, D, _, F = self.sequence
            biases = 3 * D + D + F + D  # b_qkv, b_o, the MLP's two
            if self.blocks:  # two layer norms a block, a final one; no head bias
                return self.weights + self.blocks * (biases + 2 * 2 * D) + 2 * D
            return self.weights + biases + self.features[-1] + 3 * 2 * D
        return self.weights + sum(self.features) + sum(c for c, _ in self.conv)

    @property
    def flops_per_step(self) -> int:
        """6 · batch · Σ m·k·n (6 · batch · weights for an MLP): 2 for the forward GEMMs,
        4 for the two backward ones."""
        return 6 * self.batch * sum(m * k * n for m, k, n in self.gemms())

    @property
    def largest_gemm(self) -> tuple[int, int, int]:
        """(m, k, n) of the forward GEMM with the most FLOPs (a conv's im2col for a batch)."""
        m, k, n = max(self.gemms(), key=lambda g: g[0] * g[1] * g[2])
        return self.batch * m, k, n


def _deep(name, activation, width, depth, batch, steps, description):
    return Workload(
        name,
        width,
        (width,) * depth + (10,),
        activation,
        "softmax_ce",
        batch,
        steps,
        description=description,
    )


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload(
            "tutorial",
            100,
            (5, 4, 1),
            "sigmoid",
            "sigmoid_bce",
            200,
            10_000,
            learning_rate=0.1,
            w_init="uniform",
            description="the tutorial's 100→5→4→1 sigmoid net, 200 samples, 10 000 steps",
        ),
        Workload(
            "mlp_b256",
            784,
            (1024, 1024, 10),
            "relu",
            "softmax_ce",
            256,
            10,
            description="MLP 784-1024-1024-10 relu, batch 256",
        ),
        Workload(
            "mlp_b4096",
            784,
            (1024, 1024, 10),
            "relu",
            "softmax_ce",
            4096,
            1,
            description="MLP 784-1024-1024-10 relu, batch 4096",
        ),
        *[
            _deep(
                f"deep_{act}",
                act,
                1024,
                4,
                512,
                2,
                f"4 hidden {act} layers of 1024, batch 512",
            )
            for act in ("sigmoid", "tanh", "relu")
        ],
        *[
            _deep(
                f"deep_{act}_4096",
                act,
                4096,
                4,
                4096,
                10,
                f"4 hidden {act} layers of 4096, batch 4096",
            )
            for act in ("sigmoid", "tanh", "relu")
        ],
        _deep("wide_8192x3", "relu", 8192, 3, 8192, 10, "3 hidden relu layers of 8192, batch 8192"),
        Workload(
            "tiny",
            8,
            (16, 16, 4),
            "relu",
            "softmax_ce",
            8,
            4,
            description="a tiny relu MLP for tests",
        ),
        Workload(
            "per_example",
            64,
            (256, 128, 10),
            "relu",
            "softmax_ce",
            128,
            10,
            description="per-example gradients of a digits MLP 64-256-128-10 relu, batch 128",
            per_example=True,
        ),
        Workload(
            "cnn_digits",
            64,
            (64, 10),
            "relu",
            "softmax_ce",
            256,
            10,
            description="fnn train's cnn on digits 8x8x1: conv 16, conv 32/2, dense 64, batch 256",
            image=(8, 8, 1),
            conv=((16, 1), (32, 2)),
        ),
        Workload(
            "cnn_mnist",
            784,
            (128, 10),
            "relu",
            "softmax_ce",
            128,
            2,
            description="conv net on 28x28x1: conv 32, conv 64/2, dense 128, batch 128",
            image=(28, 28, 1),
            conv=((32, 1), (64, 2)),
        ),
        Workload(
            "cnn_mnist_b1024",
            784,
            (128, 10),
            "relu",
            "softmax_ce",
            1024,
            10,
            description="conv net on 28x28x1: conv 32, conv 64/2, dense 128, batch 1024",
            image=(28, 28, 1),
            conv=((32, 1), (64, 2)),
        ),
        Workload(
            "transformer",
            64,
            (64,),
            "gelu",
            "softmax_ce",
            16,
            5,
            description="one causal transformer block on 64 tokens: D 128, 4 heads, ffn 512, "
            "vocab 64, batch 16",
            sequence=(64, 128, 4, 512),
        ),
        Workload(
            "transformer_512",
            512,
            (1024,),
            "gelu",
            "softmax_ce",
            32,
            10,
            description="one causal transformer block on 512 tokens: D 512, 8 heads, ffn 2048, "
            "vocab 1024, batch 32",
            sequence=(512, 512, 8, 2048),
        ),
        Workload(
            "gpt_small",
            64,
            (256,),
            "gelu",
            "lm_cross_entropy",
            8,
            10,
            description="a byte-level GPT: 2 blocks, D 64, 2 heads, context 64, fused head, "
            "batch 8",
            sequence=(64, 64, 2, 256),
            blocks=2,
        ),
    ]
}

CPU_WORKLOADS = (
    "tutorial",
    "mlp_b256",
    "mlp_b4096",
    "deep_sigmoid",
    "deep_tanh",
    "deep_relu",
    "per_example",
    "cnn_digits",
    "cnn_mnist",
    "transformer",
)
GPU_WORKLOADS = (
    "tutorial",
    "mlp_b256",
    "mlp_b4096",
    "deep_sigmoid_4096",
    "deep_tanh_4096",
    "deep_relu_4096",
    "wide_8192x3",
    "per_example",
    "cnn_mnist_b1024",
    "transformer_512",
)
QUICK_WORKLOADS = ("tutorial", "mlp_b256", "deep_relu", "per_example")
QUICK_STEPS = {"tutorial": 2_000}

# The dtypes a workload runs in: the checker's (the keys of its gradient tolerances:
# float32, float64) and bfloat16, on GPU.
DTYPES = (*sorted(DEFAULT_RTOL), "bfloat16")

# Timed rounds per case, unless told: `fnn bench`, `run_benchmarks`, `compare` and
# `compare_layer` all take them from here.
REPEATS = 7
QUICK_REPEATS = 3  # with `quick`


def default_repeats(quick: bool) -> int:
    """The timed rounds of a run not told how many: `QUICK_REPEATS` with `quick`, else
    `REPEATS`."""
    return QUICK_REPEATS if quick else REPEATS


def default_dtypes(workload: str, platform_name: str) -> tuple[str, ...]:
    """float32 everywhere; float64 for the tutorial on CPU; bfloat16 on GPU for the MLPs."""
    if platform_name == "cpu":
        return ("float32", "float64") if workload == "tutorial" else ("float32",)
    return ("float32",) if workload == "tutorial" else ("float32", "bfloat16")


def scaled(workload: Workload, steps: int | None) -> Workload:
    """The workload with `steps` per unit (unchanged when None)."""
    return workload if steps is None else dataclasses.replace(workload, steps=steps)


def choose_all(kind: str, names: Iterable[str], valid: Iterable[str]) -> list[str]:
    """`names` as a list, each one checked by `fnn.core.choose`: a SettingError (a
    ValueError) naming the first unknown one and listing the valid `kind`s."""
    names, table = list(names), dict.fromkeys(valid)
    for name in names:
        choose(kind, name, table)
    return names
