"""The GPT race: one training step of a byte-level GPT by fnn's hand-written backward,
by jax.grad, by jax.grad with rematerialised blocks, and by PyTorch, Equinox and Flax NNX,
all from the same parameters on the same batch, timed in alternated rounds in ONE process.

    PYTHONPATH=. .venv/bin/python benchmarks/gpt_race.py          # results/gpt_race_cpu.json+.png
    PYTHONPATH=. .venv/bin/python benchmarks/gpt_race.py --quick  # a tiny dry run, seconds
    PYTHONPATH=. .venv/bin/python benchmarks/gpt_race.py --sweep  # memory vs T, a 2-block GPT
        [--blocks 4 --width 256 --heads 4 --context 256 --T 256 --vocab 256 --batch 16]
        [--recompute gelu --block-size N --try-block-sizes 64 128 --adamw --rounds 7]

What a step is: the loss and the gradient of every parameter (`--adamw`: also the optax /
torch AdamW update), float32 unless `--dtype`. The implementations (`--impls` to choose):

- `manual`: `fnn.gpt(..., head="fused")`, `fnn.lm_cross_entropy`, `fnn.value_and_grad(...,
  "manual")`: every backward hand-written; recompute and block size from the flags.
  `manual_again` is the same program compiled a second time (the A/A row); `manual_b<n>`
  the same with attention in blocks of n (`--try-block-sizes`); `manual_rc_<mode>` with
  the other recompute modes, for time against memory.
- `autodiff`: `fnn.value_and_grad(..., "autodiff")` of `fnn.gpt(..., head="logits")` and
  `fnn.softmax_cross_entropy()`: jax.grad of the plain forward (bfloat16: the logits are
  cast to float32 before the loss, as the fused head computes them).
- `autodiff_remat`: jax.grad of the same forward written here from the same params, each
  block's forward (`fnn.gpt_block`) inside `jax.checkpoint` within the `lax.scan` over
  the stacked blocks: autodiff's own answer to memory.
- `torch_eager`, `torch_compile`: the same GPT in PyTorch (`F.scaled_dot_product_attention
  (is_causal=True)`, tied head, `F.cross_entropy`), fnn's params copied in.
- `equinox`, `flax_nnx`: the same GPT in each (`jax.nn.dot_product_attention`), fnn's
  params copied in, its gradient taken with `jax.value_and_grad` under a plain `jax.jit`
  of the split model (`eqx.partition` / `nnx.split`), the form without per-call filtering.

Measured: compile time (`.lower().compile()`; torch.compile: its first call), compiled
memory (`memory_analysis()`, JAX only), then a warm-up call each, then `--rounds` rounds in
which every implementation and a square matmul (the peak probe) run once, in an order drawn
from a seeded RNG (recorded); each timed unit is N calls (enough for `--unit-s`) ending in
`block_until_ready`. FLOPs per step: llm.c's / nanoGPT's `(6·N + 12·L·H·dh·T)·B·T`,
N the parameters without the position table (the tied token table is the head's matmul).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnn
from fnn.bench.measure import hlo_counts, machine_info, memory_figures, rel_grad_err

RESULTS = Path(__file__).parent / "results"
REFERENCE = "autodiff"
LN_EPS = 1e-5  # fnn.layer_norm's default, given to every peer
FLOPS_FORMULA = (
    "per step: (6·N + 12·L·H·dh·T)·B·T (llm.c / nanoGPT estimate_mfu), N = parameters "
    "without the position table wpe (the tied table wte counts: it is the head's matmul)"
)


@dataclasses.dataclass(frozen=True)
class Shape:
    """The GPT and the batch: `batch` sequences of `T ≤ context` tokens."""

    vocab: int = 256
    context: int = 256
    width: int = 256
    heads: int = 4
    blocks: int = 4
    batch: int = 16
    T: int = 256
    dtype: str = "float32"

    def net(self, **options) -> fnn.Layer:
        return fnn.gpt(self.vocab, self.context, self.width, self.heads, self.blocks, **options)

    def flops_per_step(self, params) -> float:
        n = sum(np.size(p) for p in jax.tree.leaves(params)) - np.size(params["wpe"])
        per_token = 6 * n + 12 * self.blocks * self.width * self.T  # 12·L·H·dh·T, H·dh = D
        return float(per_token * self.batch * self.T)


QUICK = Shape(vocab=64, context=32, width=32, heads=2, blocks=2, batch=2, T=32)


@dataclasses.dataclass
class Entry:
    """One implementation, built and compiled: `call()` runs one step, `block(out)` waits."""

    name: str
    describe: str
    call: Callable[[], Any]
    block: Callable[[Any], Any]
    compile_s: float
    loss: float
    grads: Any = None  # in fnn's layout, where it maps; else None
    wte_grad: Any = None  # the token table's gradient, (V, D)
    compiled: Any = None  # the XLA executable (JAX only)


# ---------------------------------------------------------------------------------------
# The JAX implementations


def adamw_step(vg: Callable) -> Callable:
    """`vg(params, x, y) -> (loss, grads)` plus optax's AdamW update of the params."""
    opt = optax.adamw(3e-4, weight_decay=0.1)

    def step(params, opt_state, x, y):
        loss, grads = vg(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return loss, optax.apply_updates(params, updates), opt_state

    return step, opt.init


def jax_entry(name, describe, vg, params, x, y, adamw, *, wte_of=None):
    """Compiles `vg` (or its AdamW step), runs it once for its loss and gradient. The
    gradient is in fnn's layout unless `wte_of` (a peer's: only its token table's is
    compared, taken by `wte_of`)."""
    if adamw:
        step, opt_init = adamw_step(vg)
        args = (params, opt_init(params), x, y)
    else:
        step, args = vg, (params, x, y)
    start = time.perf_counter()
    compiled = jax.jit(step).lower(*args).compile()
    compile_s = time.perf_counter() - start
    loss, grads = jax.device_get((jax.jit(vg) if adamw else compiled)(params, x, y))
    return Entry(
        name,
        describe,
        lambda: compiled(*args),
        jax.block_until_ready,
        compile_s,
        float(loss),
        grads=None if wte_of else grads,
        wte_grad=wte_of(grads) if wte_of else grads["wte"],
        compiled=compiled,
    )


def f32_logits(loss: fnn.Loss) -> fnn.Loss:
    """`loss` of the logits cast to float32 (for bfloat16: the loss in float32)."""
    return loss._replace(forward=lambda z, y: loss.forward(z.astype(jnp.float32), y))


def manual_vg(shape: Shape, recompute: str, block_size, chunk: int):
    net = shape.net(head="fused", recompute=recompute, block_size=block_size)
    return fnn.value_and_grad(net, fnn.lm_cross_entropy(chunk), "manual")


def autodiff_vg(shape: Shape):
    return fnn.value_and_grad(shape.net(head="logits"), plain_loss(shape), "autodiff")


def plain_loss(shape: Shape) -> fnn.Loss:
    loss = fnn.softmax_cross_entropy()
    return loss if shape.dtype == "float32" else f32_logits(loss)


def remat_vg(shape: Shape):
    """jax.grad of the GPT's forward with `jax.checkpoint` around each block."""
    block = fnn.gpt_block(shape.width, shape.heads, blocks=shape.blocks)
    ln_f, loss = fnn.layer_norm(), plain_loss(shape)

    @jax.checkpoint
    def run_block(z, block_params):
        return fnn.apply(block, block_params, z)  # only the block's input is kept

    def objective(params, x, y):
        z = params["wte"][x] + params["wpe"][: x.shape[1]]  # z₀ = E[x] + P[:T]
        z, _ = jax.lax.scan(lambda z, p: (run_block(z, p), None), z, params["blocks"])
        h = fnn.apply(ln_f, params["ln_f"], z)
        return loss.forward(jnp.einsum("btd,vd->btv", h, params["wte"]), y)[0]

    return jax.value_and_grad(objective)


# ---------------------------------------------------------------------------------------
# The peers: the same GPT in PyTorch, Equinox and Flax NNX


def _np32(a) -> np.ndarray:
    return np.asarray(jnp.asarray(a, jnp.float32))


def _block(params, l) -> dict:
    """Block l's params (fnn's tree: ln1, attn, ln2, fc, proj) from the stacked ones."""
    return jax.tree.map(lambda a: a[l], params["blocks"])


def torch_entry(shape, params, x, y, adamw, compiled: bool, device: str) -> Entry:
    """fnn's params copied into torch tensors in fnn's tree, each matrix `W` transposed to
    torch's (out, in) for `F.linear`; the gradient mapped back the same way."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count() or 1)
    dtype = getattr(torch, shape.dtype)
    D, H = shape.width, shape.heads

    def to_torch(tree):
        return {
            k: to_torch(v)
            if isinstance(v, dict)
            else torch.tensor(
                np.ascontiguousarray(_np32(v).T if k.startswith("W") else _np32(v)),
                dtype=dtype,
                device=device,
            ).requires_grad_()
            for k, v in tree.items()
        }

    def grad_of(tree):
        return {
            k: grad_of(v)
            if isinstance(v, dict)
            else (v.grad.T if k.startswith("W") else v.grad).float().cpu().numpy()
            for k, v in tree.items()
        }

    top = to_torch({k: params[k] for k in ("wte", "wpe", "ln_f")})
    blocks = [to_torch(_block(params, l)) for l in range(shape.blocks)]
    leaves = [*jax.tree.leaves(top), *jax.tree.leaves(blocks)]
    tx, ty = (torch.tensor(np.asarray(a), dtype=torch.long, device=device) for a in (x, y))

    def norm(z, p):
        return F.layer_norm(z, (D,), p["scale"], p["bias"], LN_EPS)

    def loss_fn(top, blocks, x, y):
        B, T = x.shape
        z = F.embedding(x, top["wte"]) + top["wpe"][:T]
        for b in blocks:
            a = b["attn"]
            q, k, v = F.linear(norm(z, b["ln1"]), a["W_qkv"], a["b_qkv"]).split(D, dim=-1)
            q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            z = z + F.linear(o.transpose(1, 2).reshape(B, T, D), a["W_o"], a["b_o"])
            m = F.linear(norm(z, b["ln2"]), b["fc"]["W"], b["fc"]["b"])
            z = z + F.linear(F.gelu(m, approximate="tanh"), b["proj"]["W"], b["proj"]["b"])
        logits = F.linear(norm(z, top["ln_f"]), top["wte"])  # the tied head
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))

    fn = torch.compile(loss_fn) if compiled else loss_fn
    opt = torch.optim.AdamW(leaves, lr=3e-4, weight_decay=0.1) if adamw else None
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def call():
        for t in leaves:
            t.grad = None
        loss = fn(top, blocks, tx, ty)
        loss.backward()
        if opt is not None:
            opt.step()
        return loss

    start = time.perf_counter()
    loss = call()  # torch.compile compiles here (forward and backward)
    sync()
    compile_s = time.perf_counter() - start
    # .grad holds the gradient at the initial params (an AdamW step changes params only)
    grads = {**grad_of(top), "blocks": jax.tree.map(lambda *g: np.stack(g), *map(grad_of, blocks))}
    kind = "torch.compile" if compiled else "eager"
    return Entry(
        "torch_compile" if compiled else "torch_eager",
        f"PyTorch {torch.__version__} {kind}, {torch.get_num_threads()} threads, {device}",
        call,
        lambda out: sync(),
        compile_s if compiled else 0.0,
        float(loss.detach().float()),
        grads=grads,
        wte_grad=grads["wte"],
    )


def equinox_vg(shape: Shape, params):
    import equinox as eqx

    H = shape.heads

    def linear(p, W="W", b="b"):
        layer = eqx.nn.Linear(*p[W].shape, key=jax.random.PRNGKey(0))
        return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (p[W].T, p[b]))

    def norm(p):
        layer = eqx.nn.LayerNorm(p["scale"].shape[0], eps=LN_EPS)
        return eqx.tree_at(lambda m: (m.weight, m.bias), layer, (p["scale"], p["bias"]))

    class Block(eqx.Module):
        ln1: eqx.nn.LayerNorm
        qkv: eqx.nn.Linear
        o: eqx.nn.Linear
        ln2: eqx.nn.LayerNorm
        fc: eqx.nn.Linear
        proj: eqx.nn.Linear

        def __call__(self, z):  # one sequence, (T, D): Equinox's layers take one example
            T, D = z.shape
            qkv = jax.vmap(self.qkv)(jax.vmap(self.ln1)(z))
            q, k, v = (a.reshape(T, H, D // H) for a in jnp.split(qkv, 3, axis=-1))
            o = jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(T, D)
            z = z + jax.vmap(self.o)(o)
            m = jax.nn.gelu(jax.vmap(self.fc)(jax.vmap(self.ln2)(z)), approximate=True)
            return z + jax.vmap(self.proj)(m)

    class GPT(eqx.Module):
        wte: jax.Array
        wpe: jax.Array
        blocks: list
        ln_f: eqx.nn.LayerNorm

        def __call__(self, ids):  # (T,) ids -> (T, V) logits
            z = self.wte[ids] + self.wpe[: ids.shape[0]]
            for block in self.blocks:
                z = block(z)
            return jax.vmap(self.ln_f)(z) @ self.wte.T  # the tied head

    blocks = []
    for l in range(shape.blocks):
        b = _block(params, l)
        attn = b["attn"]
        qkv, o = linear(attn, "W_qkv", "b_qkv"), linear(attn, "W_o", "b_o")
        blocks.append(
            Block(norm(b["ln1"]), qkv, o, norm(b["ln2"]), linear(b["fc"]), linear(b["proj"]))
        )
    model = GPT(params["wte"], params["wpe"], blocks, norm(params["ln_f"]))
    arrays, static = eqx.partition(model, eqx.is_array)

    def loss(arrays, x, y):
        logits = jax.vmap(eqx.combine(arrays, static))(x).astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return jax.value_and_grad(loss), arrays, (lambda g: g.wte), eqx.__version__


def flax_nnx_vg(shape: Shape, params):
    import flax
    from flax import nnx

    D, H, F = shape.width, shape.heads, 4 * shape.width
    rngs = nnx.Rngs(0)

    class Block(nnx.Module):
        def __init__(self):
            self.ln1 = nnx.LayerNorm(D, epsilon=LN_EPS, rngs=rngs)
            self.qkv = nnx.Linear(D, 3 * D, rngs=rngs)
            self.o = nnx.Linear(D, D, rngs=rngs)
            self.ln2 = nnx.LayerNorm(D, epsilon=LN_EPS, rngs=rngs)
            self.fc = nnx.Linear(D, F, rngs=rngs)
            self.proj = nnx.Linear(F, D, rngs=rngs)

        def __call__(self, z):  # (B, T, D)
            B, T, _ = z.shape
            qkv = jnp.split(self.qkv(self.ln1(z)), 3, axis=-1)
            q, k, v = (a.reshape(B, T, H, D // H) for a in qkv)
            o = jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(B, T, D)
            z = z + self.o(o)
            return z + self.proj(jax.nn.gelu(self.fc(self.ln2(z)), approximate=True))

    class GPT(nnx.Module):
        def __init__(self):
            self.wte = nnx.Param(params["wte"])
            self.wpe = nnx.Param(params["wpe"])
            self.blocks = getattr(nnx, "List", list)([Block() for _ in range(shape.blocks)])
            self.ln_f = nnx.LayerNorm(D, epsilon=LN_EPS, rngs=rngs)

        def __call__(self, ids):  # (B, T) ids -> (B, T, V) logits
            z = self.wte[...][ids] + self.wpe[...][: ids.shape[1]]
            for block in self.blocks:
                z = block(z)
            return self.ln_f(z) @ self.wte[...].T  # the tied head

    def load(layer, p, W="W", b="b"):
        if "scale" in p:
            layer.scale[...], layer.bias[...] = p["scale"], p["bias"]
        else:
            layer.kernel[...], layer.bias[...] = p[W], p[b]

    model = GPT()
    for l, block in enumerate(model.blocks):
        b = _block(params, l)
        for name in ("ln1", "ln2", "fc", "proj"):
            load(getattr(block, name), b[name])
        load(block.qkv, b["attn"], "W_qkv", "b_qkv")
        load(block.o, b["attn"], "W_o", "b_o")
    load(model.ln_f, params["ln_f"])
    graphdef, state = nnx.split(model)

    def loss(state, x, y):
        logits = nnx.merge(graphdef, state)(x).astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return jax.value_and_grad(loss), state, (lambda g: g["wte"][...]), flax.__version__


# ---------------------------------------------------------------------------------------
# Building every implementation


@dataclasses.dataclass(frozen=True)
class Settings:
    """How the race runs (the command line's flags, less the shape)."""

    recompute: str = "gelu"
    block_size: int | None = None
    try_block_sizes: tuple[int, ...] = (64, 128)
    chunk: int = 1024
    adamw: bool = False
    rounds: int = 7
    unit_s: float = 0.3
    peak_size: int = 2048
    seed: int = 0
    torch_device: str = "cpu"
    loss_tol: float = 1e-5  # remat vs manual (float32)
    torch_tol: float = 1e-4


def manual_rows(settings: Settings, recompute_modes) -> dict[str, tuple[str, Any]]:
    """name -> (recompute, block_size) of the manual rows."""
    s = settings
    rows = {"manual": (s.recompute, s.block_size), "manual_again": (s.recompute, s.block_size)}
    for b in s.try_block_sizes:
        if b != s.block_size:
            rows[f"manual_b{b}"] = (s.recompute, b)
    for mode in recompute_modes:
        if mode != s.recompute:
            rows[f"manual_rc_{mode}"] = (mode, s.block_size)
    return rows


def all_names(settings: Settings) -> list[str]:
    return [
        *manual_rows(settings, fnn.lm.RECOMPUTE),
        "autodiff",
        "autodiff_remat",
        "torch_eager",
        "torch_compile",
        "equinox",
        "flax_nnx",
    ]


def build(name, shape, settings, params, x, y) -> Entry | str:
    """The implementation `name`, built and compiled, or the reason it cannot run here."""
    s = settings
    manual = manual_rows(s, fnn.lm.RECOMPUTE)
    if name in manual:
        recompute, block_size = manual[name]
        vg = manual_vg(shape, recompute, block_size, s.chunk)
        if name == "manual_again":
            vg = (lambda f: lambda *a: f(*a))(vg)  # a second, separately compiled program
        describe = (
            f"fnn hand-written backward, fused head (chunk {s.chunk}), recompute "
            f"{recompute}, block_size {block_size}"
        )
        return jax_entry(name, describe, vg, params, x, y, s.adamw)
    if name == "autodiff":
        return jax_entry(
            name,
            "jax.grad of fnn.gpt(head='logits') + softmax_cross_entropy",
            autodiff_vg(shape),
            params,
            x,
            y,
            s.adamw,
        )
    if name == "autodiff_remat":
        return jax_entry(
            name,
            "jax.grad, jax.checkpoint around each block in the lax.scan",
            remat_vg(shape),
            params,
            x,
            y,
            s.adamw,
        )
    if name in ("torch_eager", "torch_compile"):
        if importlib.util.find_spec("torch") is None:
            return "torch not installed"
        return torch_entry(shape, params, x, y, s.adamw, name == "torch_compile", s.torch_device)
    if name in ("equinox", "flax_nnx"):
        module = "equinox" if name == "equinox" else "flax"
        if importlib.util.find_spec(module) is None:
            return f"{module} not installed"
        builder = equinox_vg if name == "equinox" else flax_nnx_vg
        vg, arrays, wte_of, version = builder(shape, params)
        describe = f"{module} {version}, jax.value_and_grad under jax.jit of the split model"
        return jax_entry(name, describe, vg, arrays, x, y, s.adamw, wte_of=wte_of)
    raise ValueError(f"unknown implementation {name!r}; valid: {all_names(settings)}")


# ---------------------------------------------------------------------------------------
# The race


def make_batch(shape: Shape, seed: int):
    params = jax.jit(lambda k: shape.net().init(k, (shape.T,), jnp.dtype(shape.dtype))[1])(
        jax.random.PRNGKey(seed)
    )
    ids = np.random.default_rng(seed).integers(0, shape.vocab, (shape.batch, shape.T + 1))
    x, y = jnp.asarray(ids[:, :-1], jnp.int32), jnp.asarray(ids[:, 1:], jnp.int32)
    return params, x, y


def peak_entry(size: int, dtype: str) -> Entry:
    a = jnp.ones((size, size), dtype) / size
    f = jax.jit(lambda a, b: a @ b).lower(a, a).compile()
    return Entry(
        "peak_matmul",
        f"{size}³ {dtype} matmul in JAX",
        lambda: f(a, a),
        jax.block_until_ready,
        0.0,
        float("nan"),
    )


def unit_of(entry: Entry, calls: int) -> Callable[[], float]:
    """Seconds per call of `calls` calls ending in one wait."""

    def unit():
        start = time.perf_counter()
        out = None
        for _ in range(calls):
            out = entry.call()
        entry.block(out)
        return (time.perf_counter() - start) / calls

    return unit


def race(shape: Shape, settings: Settings, names, progress=print, hlo_dir=None) -> dict:
    """Builds, checks and times `names` (plus the peak probe); returns the results. With
    `hlo_dir`, writes each JAX row's compiled HLO there (`<name>.hlo.txt`)."""
    s = settings
    params, x, y = make_batch(shape, s.seed)
    entries, skipped = {}, {}
    for name in names:
        progress(f"building {name} ...")
        built = build(name, shape, s, params, x, y)
        if isinstance(built, str):
            skipped[name] = built
            progress(f"  skipped: {built}")
            continue
        entries[name] = built
        if hlo_dir is not None and built.compiled is not None:
            Path(hlo_dir).mkdir(parents=True, exist_ok=True)
            (Path(hlo_dir) / f"{name}.hlo.txt").write_text(built.compiled.as_text())
        progress(f"  compile {built.compile_s:.2f} s, loss {built.loss:.6f}")
    checks = check(entries, shape, s)
    peak_size = s.peak_size
    entries["peak_matmul"] = peak_entry(peak_size, shape.dtype)
    units = {}
    for name, entry in entries.items():  # warm-up calls, which size the timed units
        warm = unit_of(entry, 1)()
        units[name] = (
            unit_of(entry, max(1, round(s.unit_s / warm))),
            max(1, round(s.unit_s / warm)),
        )
        progress(f"warm-up {name}: {1e3 * warm:.1f} ms, {units[name][1]} calls a unit")
    rng = np.random.default_rng(s.seed)
    times, orders, loads = {name: [] for name in units}, [], []
    for r in range(s.rounds):
        order = [str(n) for n in rng.permutation(list(units))]
        orders.append(order)
        for name in order:
            times[name].append(units[name][0]())
        loads.append(os.getloadavg()[0])  # others' work on a shared machine shows here
        progress(
            f"round {r + 1}/{s.rounds}: "
            + ", ".join(f"{n} {1e3 * times[n][-1]:.0f}" for n in units if n != "peak_matmul")
            + " ms"
        )
    result = summarise(shape, s, entries, units, times, orders, checks, skipped, params)
    return {**result, "load_average_1min_per_round": loads}


def check(entries: dict[str, Entry], shape: Shape, s: Settings) -> dict[str, Any]:
    """Every implementation's loss and gradient against `manual`'s; raises in float32
    where the brief's tolerances fail (remat 1e-5, torch 1e-4 on the loss)."""
    ref = entries.get("manual")
    if ref is None:
        return {}
    out = {}
    for name, e in entries.items():
        diff = abs(e.loss - ref.loss)
        out[name] = {
            "loss": e.loss,
            "loss_diff_vs_manual": diff,
            "rel_grad_err_vs_manual": None if e.grads is None else rel_grad_err(e.grads, ref.grads),
            "wte_grad_err_vs_manual": None
            if e.wte_grad is None
            else rel_grad_err(e.wte_grad, ref.grads["wte"]),
        }
        tol = s.torch_tol if name.startswith("torch") else s.loss_tol
        if shape.dtype == "float32" and diff > tol:
            raise AssertionError(
                f"{name}'s loss {e.loss} differs from manual's {ref.loss} by {diff}"
            )
    return out


def summarise(shape, s, entries, units, times, orders, checks, skipped, params) -> dict:
    flops = shape.flops_per_step(params)
    tokens = shape.batch * shape.T
    peak_s = statistics.median(times["peak_matmul"])
    peak = 2.0 * s.peak_size**3 / peak_s
    ref = times.get(REFERENCE)
    rows = {}
    for name, entry in entries.items():
        if name == "peak_matmul":
            continue
        t = times[name]
        median = statistics.median(t)
        q1, q3 = np.percentile(t, [25, 75])
        row = {
            "describe": entry.describe,
            "compile_s": entry.compile_s,
            "calls_per_unit": units[name][1],
            "step_s_per_round": t,
            "median_step_s": median,
            "iqr_s": float(q3 - q1),
            "best_step_s": min(t),
            "tokens_per_s": tokens / median,
            "flops_per_s": flops / median,
            "pct_of_peak": 100 * flops / median / peak,
            "ratio_vs_autodiff_paired": None
            if ref is None
            else statistics.median(a / b for a, b in zip(t, ref, strict=True)),
            "ratio_vs_autodiff_of_medians": None
            if ref is None
            else median / statistics.median(ref),
            **memory_figures(entry.compiled),
            **(hlo_counts(entry.compiled.as_text()) if entry.compiled is not None else {}),
            **checks.get(name, {}),
        }
        rows[name] = row
    return {
        "shape": dataclasses.asdict(shape),
        "settings": dataclasses.asdict(s),
        "step": "value and grad + AdamW update" if s.adamw else "value and grad (no update)",
        "tokens_per_step": tokens,
        "flops_per_step": flops,
        "flops_formula": FLOPS_FORMULA,
        "peak": {
            "probe": f"{s.peak_size}³ {shape.dtype} matmul in JAX, {units['peak_matmul'][1]}"
            f" calls a unit, median over rounds",
            "median_s": peak_s,
            "flops_per_s": peak,
            "per_round_s": times["peak_matmul"],
        },
        "orders": orders,
        "skipped": skipped,
        "rows": rows,
        "aa": aa_spread(times),
        "block_size_at_T": fastest_block(rows, s, shape),
        "goals": goals(rows),
    }


def aa_spread(times) -> dict | None:
    if "manual" not in times or "manual_again" not in times:
        return None
    ratios = [a / b for a, b in zip(times["manual_again"], times["manual"], strict=True)]
    return {
        "paired_ratio_median": statistics.median(ratios),
        "paired_ratio_min": min(ratios),
        "paired_ratio_max": max(ratios),
        "ratio_of_medians": statistics.median(times["manual_again"])
        / statistics.median(times["manual"]),
    }


def fastest_block(rows, s: Settings, shape: Shape) -> dict:
    """The manual rows at the flag's recompute that differ only in block size."""
    sizes = {"manual": s.block_size, **{f"manual_b{b}": b for b in s.try_block_sizes}}
    found = {str(b): rows[n]["median_step_s"] for n, b in sizes.items() if n in rows}
    best = min(found, key=found.get) if found else None
    return {"T": shape.T, "median_step_s": found, "fastest": best}


def goals(rows) -> dict:
    """The brief's three goals, each with its figure, the per-round paired figures (times
    of the two rows in the same round) and whether it passed."""

    def paired(a, b):  # a's time over b's, round by round
        return [x / y for x, y in zip(a["step_s_per_round"], b["step_s_per_round"], strict=True)]

    out = {}
    m, a, t = rows.get("manual"), rows.get("autodiff"), rows.get("torch_eager")
    if m and a:
        ratio = m["ratio_vs_autodiff_paired"]
        out["step_le_1.0x_autodiff"] = {
            "value": ratio,
            "ratio_of_medians": m["ratio_vs_autodiff_of_medians"],
            "target": 1.0,
            "pass": ratio <= 1.0,
        }
        if m.get("temp_bytes") and a.get("temp_bytes"):
            r = m["temp_bytes"] / a["temp_bytes"]
            out["temp_le_0.5x_autodiff"] = {"value": r, "target": 0.5, "pass": r <= 0.5}
    if m and t:
        r = m["tokens_per_s"] / t["tokens_per_s"]
        per_round = paired(t, m)  # torch's time over manual's: > 1 where manual was faster
        out["tokens_ge_torch_eager"] = {
            "value": r,
            "paired_per_round": per_round,
            "paired_median": statistics.median(per_round),
            "target": 1.0,
            "pass": r >= 1.0 and statistics.median(per_round) >= 1.0,
        }
    return out


# ---------------------------------------------------------------------------------------
# The memory sweep


def sweep(Ts, rounds, max_step_s, seed, progress=print) -> dict:
    """A 2-block GPT (width 128, 4 heads, batch 1): compiled temp memory at every T, and
    the step time where a step is shorter than `max_step_s` (predicted from the last T)."""
    impls = {
        "manual_b128_all": lambda sh: manual_vg(sh, "all", 128, 1024),
        "manual_dense_gelu": lambda sh: manual_vg(sh, "gelu", None, 1024),
        "autodiff": autodiff_vg,
        "autodiff_remat": remat_vg,
    }
    rows, last = [], {}
    rng = np.random.default_rng(seed)
    for T in Ts:
        shape = Shape(vocab=256, context=max(Ts), width=128, heads=4, blocks=2, batch=1, T=T)
        params, x, y = make_batch(shape, seed)
        compiled, units = {}, {}
        for name, make in impls.items():
            start = time.perf_counter()
            compiled[name] = jax.jit(make(shape)).lower(params, x, y).compile()
            compile_s = time.perf_counter() - start
            rows.append(
                {
                    "T": T,
                    "impl": name,
                    "compile_s": compile_s,
                    **memory_figures(compiled[name]),
                    "median_step_s": None,
                }
            )
            grow = (T / last[name][0]) ** 2 if name in last else 1.0
            if name not in last or last[name][1] * grow < max_step_s:
                call = lambda c=compiled[name], a=(params, x, y): c(*a)  # noqa: E731
                entry = Entry(name, "", call, jax.block_until_ready, compile_s, 0.0)
                warm = unit_of(entry, 1)()
                if warm < max_step_s:
                    units[name] = unit_of(entry, 1)
                last[name] = (T, warm)
            progress(
                f"T {T} {name}: temp {rows[-1]['temp_bytes'] / 2**20:.1f} MiB, "
                f"compile {compile_s:.1f} s" + (", timed" if name in units else "")
            )
        times = {name: [] for name in units}
        for _ in range(rounds):
            for name in rng.permutation(list(units)):
                times[str(name)].append(units[str(name)]())
        for row in rows:
            if row["T"] == T and row["impl"] in times:
                row["median_step_s"] = statistics.median(times[row["impl"]])
                row["step_s_per_round"] = times[row["impl"]]
        del compiled
    return {
        "shape": "GPT: 2 blocks, width 128, 4 heads, vocab 256, batch 1, float32",
        "impls": {
            "manual_b128_all": "fnn manual, block_size 128, recompute all",
            "manual_dense_gelu": "fnn manual, block_size None, recompute gelu",
            "autodiff": "jax.grad, logits head",
            "autodiff_remat": "jax.grad, jax.checkpoint per block",
        },
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------
# Charts, the record, the command line


def where(machine: dict) -> str:
    """The device for a chart's title: the CPU's model, or the accelerator's kind."""
    if machine["platform"] == "cpu":
        return f"{machine['cpu_model']}, {machine['cores']} cores"
    return machine["device_kind"]


def plot_race(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = sorted(rows, key=lambda n: rows[n]["median_step_s"])
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.8))
    ms = [1e3 * rows[n]["median_step_s"] for n in names]
    ax_t.barh(names, ms, xerr=[1e3 * rows[n]["iqr_s"] / 2 for n in names], color="tab:blue")
    for i, n in enumerate(names):
        ax_t.text(
            ms[i],
            i,
            f" {ms[i]:.0f} ms, {rows[n]['pct_of_peak']:.0f}% peak",
            va="center",
            fontsize=8,
        )
    ax_t.set_xlabel("median step (ms), IQR bars")
    ax_t.invert_yaxis()
    mem = [(rows[n].get("temp_bytes") or 0) / 2**20 for n in names]
    ax_m.barh(names, mem, color="tab:orange")
    for i, n in enumerate(names):
        if not rows[n].get("temp_bytes"):
            ax_m.text(0, i, " n/a (not XLA)", va="center", fontsize=8)
    ax_m.set_xlabel("compiled temp memory (MiB; JAX only)")
    ax_m.invert_yaxis()
    sh = result["shape"]
    fig.suptitle(
        f"GPT L{sh['blocks']} D{sh['width']} H{sh['heads']} T{sh['T']} B{sh['batch']} "
        f"{sh['dtype']}, {result['step']} — {where(result['machine'])}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_t) = plt.subplots(1, 2, figsize=(12, 4.5))
    for impl in result["impls"]:
        rows = [r for r in result["rows"] if r["impl"] == impl]
        ax_m.plot([r["T"] for r in rows], [r["temp_bytes"] / 2**20 for r in rows], "o-", label=impl)
        timed = [r for r in rows if r["median_step_s"] is not None]
        ax_t.plot(
            [r["T"] for r in timed], [1e3 * r["median_step_s"] for r in timed], "o-", label=impl
        )
    for ax, label in ((ax_m, "compiled temp memory (MiB)"), (ax_t, "median step (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(result["shape"] + f" — {where(result['machine'])}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versions() -> dict[str, str]:
    out = {
        "jax": jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "fnn": fnn.__version__ if hasattr(fnn, "__version__") else "?",
    }
    for module in ("torch", "equinox", "flax"):
        if importlib.util.find_spec(module) is not None:
            out[module] = __import__(module).__version__
    return out


def record(result: dict, args, notes) -> dict:
    return {
        "machine": {**machine_info(), "cores": os.cpu_count()},
        "versions": versions(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average_at_end": os.getloadavg(),  # 1, 5, 15 min: others' work counts too
        "flags": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "notes": notes,
        **result,
    }


def table(result: dict) -> str:
    lines = [
        f"{'impl':<16} {'median ms':>9} {'IQR':>6} {'tok/s':>8} {'%peak':>6} "
        f"{'×autodiff':>9} {'×(medians)':>10} {'temp MiB':>9} {'compile s':>9} {'loss diff':>9}"
    ]
    for name, r in sorted(result["rows"].items(), key=lambda kv: kv[1]["median_step_s"]):
        temp = f"{r['temp_bytes'] / 2**20:9.1f}" if r.get("temp_bytes") else f"{'-':>9}"
        ratio = r["ratio_vs_autodiff_paired"]
        lines.append(
            f"{name:<16} {1e3 * r['median_step_s']:9.1f} {1e3 * r['iqr_s']:6.1f} "
            f"{r['tokens_per_s']:8.0f} {r['pct_of_peak']:6.1f} "
            f"{ratio if ratio is not None else float('nan'):9.3f} "
            f"{r['ratio_vs_autodiff_of_medians'] or float('nan'):10.3f} {temp} "
            f"{r['compile_s']:9.2f} {r.get('loss_diff_vs_manual', float('nan')):9.1e}"
        )
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = Shape()
    for field in ("vocab", "context", "width", "heads", "blocks", "batch", "T"):
        p.add_argument(f"--{field}", type=int, default=getattr(d, field))
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--recompute", default="gelu", choices=fnn.lm.RECOMPUTE)
    p.add_argument("--block-size", type=int, default=None, help="manual's attention blocks")
    p.add_argument("--try-block-sizes", type=int, nargs="*", default=[64, 128])
    p.add_argument("--chunk", type=int, default=1024, help="lm_cross_entropy's rows a chunk")
    p.add_argument("--adamw", action="store_true", help="time the AdamW update too")
    p.add_argument("--impls", default=None, help="comma-separated; default: all")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--unit-s", type=float, default=0.3, help="seconds a timed unit aims at")
    p.add_argument("--peak-size", type=int, default=2048)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="a tiny dry run (not a result)")
    p.add_argument("--sweep", action="store_true", help="the memory sweep instead of the race")
    p.add_argument("--sweep-T", type=int, nargs="*", default=[256, 512, 1024, 2048, 4096, 8192])
    p.add_argument("--max-step-s", type=float, default=5.0, help="sweep: time only below")
    p.add_argument("--hlo-dir", type=Path, default=None, help="write each JAX row's HLO here")
    p.add_argument("--note", action="append", default=[], help="a note for the JSON")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    notes = list(args.note)
    if args.sweep:
        Ts = [256, 512] if args.quick else args.sweep_T
        out = args.out or (
            Path("/tmp/gpt_memory_sweep_quick.json")
            if args.quick
            else RESULTS / "gpt_memory_sweep_cpu.json"
        )
        result = sweep(Ts, 2 if args.quick else 3, args.max_step_s, args.seed)
        run = record(result, args, notes)
        for r in result["rows"]:
            ms = f"{1e3 * r['median_step_s']:9.1f}" if r["median_step_s"] else f"{'-':>9}"
            print(f"T {r['T']:5d} {r['impl']:<18} temp {r['temp_bytes'] / 2**20:9.1f} MiB {ms} ms")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(run, indent=1) + "\n")
        plot_sweep(run, out.with_suffix(".png"))
        print(f"wrote {out} and {out.with_suffix('.png')}")
        return
    shape = QUICK if args.quick else Shape(**{f: getattr(args, f) for f in Shape.__annotations__})
    settings = Settings(
        recompute=args.recompute,
        block_size=args.block_size,
        try_block_sizes=(16,) if args.quick else tuple(args.try_block_sizes),
        chunk=args.chunk,
        adamw=args.adamw,
        rounds=2 if args.quick else args.rounds,
        unit_s=0.02 if args.quick else args.unit_s,
        peak_size=256 if args.quick else args.peak_size,
        seed=args.seed,
    )
    names = args.impls.split(",") if args.impls else all_names(settings)
    if args.quick and not args.impls:
        names = [n for n in names if n != "torch_compile"]  # minutes of compile: ask for it
    result = race(shape, settings, names, hlo_dir=args.hlo_dir)
    run = record(result, args, notes)
    print(table(result))
    print(
        json.dumps(
            {"aa": result["aa"], "block_size": result["block_size_at_T"], "goals": result["goals"]},
            indent=1,
        )
    )
    out = args.out or (
        Path("/tmp/gpt_race_quick.json")
        if args.quick
        else RESULTS / f"gpt_race_{jax.devices()[0].platform}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(run, indent=1) + "\n")
    plot_race(run, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
