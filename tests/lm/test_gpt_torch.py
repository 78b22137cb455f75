"""fnn.gpt against the same GPT written in plain PyTorch (as llm.c's test_gpt2.c checks its
C model against PyTorch's), from the same params, in general position: the logits, the
loss (the logits head with softmax_cross_entropy, and the fused head with
lm_cross_entropy over chunks that do not divide batch·T), every parameter's gradient
(fnn's hand-written backward against torch autograd), under each recompute mode and with
blockwise attention, and the losses of 10 AdamW steps (optax against torch.optim).

The PyTorch model is checked with two attentions: F.scaled_dot_product_attention and a
plain matmul-softmax one. Errors are measured per leaf as max|a − b| / max|b| (`rel_err`).

float64: every comparison within 1e-10 (measured: ~2e-15); float32: within 1e-5 (measured:
≤ 6.6e-7; see F32_TOL). llm.c's test_gpt2.c, float32: 1e-2 logits and loss, 2e-2
gradients, 1e-2 AdamW losses.

Skipped when PyTorch is not installed (CI does not install it). PyTorch is imported by the
tests that use it, not at collection: importing it costs every pytest worker 2–3 s of CPU,
even one that runs none of these tests.
"""

import functools
import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnn
from fnn.lm.head import tied_logits

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="PyTorch is not installed"
)
optax = pytest.importorskip("optax")

V, CONTEXT, D, H, L = 13, 8, 8, 2, 2  # vocab, context, width, heads, blocks
B, T = 3, 7  # batch·T = 21 rows
CHUNK = 4  # lm_cross_entropy's chunk: does not divide 21 (the last chunk is padded)
BLOCK_SIZE = 4  # blockwise attention: does not divide T = 7 either
ATTENTIONS = ("sdpa", "matmul")
ADAM = dict(lr=1e-2, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1)
STEPS = 10

F64_TOL = 1e-10
# float32 (eps = 2⁻²³ ≈ 1.2e-7). Measured (jax 0.10.2, torch 2.13 CPU), worst over every
# configuration and both torch attentions: logits 3.7e-7, loss 1.6e-7, gradients 6.6e-7
# (wpe's), AdamW losses 1.2e-7 and params after 10 steps 3.9e-7: at most ~6 eps. Two
# programs that round and sum in different orders differ by about eps·(number of
# rounding steps on the longest path)·(conditioning): here ~2·L + 2 = 6 layers each way
# (every layer norm, softmax and matmul adding O(eps), the matmuls summing 8–32 terms),
# with weights of O(0.3) keeping every step well conditioned. 1e-5 (~80 eps) leaves a
# margin of 15 over the measurement for other BLAS and XLA versions, and is 1000 times
# tighter than llm.c's 1e-2 (2e-2 for gradients).
F32_TOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Torch on one thread: these tensors are tiny, and on a busy 2-core machine two
    threads made some calls (F.scaled_dot_product_attention's) ~500x slower (measured:
    0.9 s against 2 ms a forward and backward)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------ comparing trees
def rel_err(got, want) -> float:
    """max|got − want| / max|want| over one leaf, in float64 (0 when both are all zeros)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = np.max(np.abs(want))
    diff = np.max(np.abs(got - want))
    return float(diff / scale) if scale > 0 else float(diff)


def errors(got, want) -> dict[str, float]:
    """{leaf path: rel_err} for two pytrees of the same structure (dicts of arrays)."""
    got_leaves = jax.tree_util.tree_flatten_with_path(got)[0]
    want_leaves, want_def = jax.tree_util.tree_flatten_with_path(want)
    assert jax.tree.structure(got) == want_def, (jax.tree.structure(got), want_def)
    return {
        jax.tree_util.keystr(path): rel_err(g, w)
        for (path, g), (_, w) in zip(got_leaves, want_leaves, strict=True)
    }


def mismatches(got, want, tol) -> dict[str, float]:
    """The leaves whose relative error exceeds tol (or is NaN): {} when all agree."""
    return {k: e for k, e in errors(got, want).items() if not e <= tol}


# ------------------------------------------------------------------------ the torch GPT
def torch_gpt(p, ids, attention):
    """logits (B, T, V) of the GPT in plain PyTorch, from a dict of tensors shaped as
    fnn.gpt's params (the blocks stacked along a leading axis)."""
    import torch
    import torch.nn.functional as F

    T_ = ids.shape[1]
    Dm = p["wte"].shape[1]
    dh = Dm // H
    x = p["wte"][ids] + p["wpe"][:T_]
    for layer in range(p["blocks"]["fc"]["W"].shape[0]):
        blk = {name: {k: v[layer] for k, v in sub.items()} for name, sub in p["blocks"].items()}
        a = F.layer_norm(x, (Dm,), blk["ln1"]["scale"], blk["ln1"]["bias"], eps=1e-5)
        qkv = a @ blk["attn"]["W_qkv"] + blk["attn"]["b_qkv"]
        q, k, v = (t.reshape(*t.shape[:2], H, dh).transpose(1, 2) for t in qkv.split(Dm, -1))
        if attention == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = q @ k.transpose(-2, -1) / math.sqrt(dh)
            future = torch.ones(T_, T_, dtype=torch.bool).triu(1)
            o = torch.softmax(s.masked_fill(future, -math.inf), dim=-1) @ v
        o = o.transpose(1, 2).reshape(x.shape)
        x = x + o @ blk["attn"]["W_o"] + blk["attn"]["b_o"]
        b = F.layer_norm(x, (Dm,), blk["ln2"]["scale"], blk["ln2"]["bias"], eps=1e-5)
        g = F.gelu(b @ blk["fc"]["W"] + blk["fc"]["b"], approximate="tanh")
        x = x + g @ blk["proj"]["W"] + blk["proj"]["b"]
    h = F.layer_norm(x, (Dm,), p["ln_f"]["scale"], p["ln_f"]["bias"], eps=1e-5)
    return h @ p["wte"].T  # the tied head


def to_torch(tree, requires_grad=False):
    import torch

    return jax.tree.map(lambda a: torch.from_numpy(np.array(a)).requires_grad_(requires_grad), tree)


def to_numpy(tree):
    import torch

    return jax.tree.map(lambda t: t.detach().numpy(), tree, is_leaf=torch.is_tensor)


@functools.cache
def torch_reference(dtype, attention):
    """(logits, loss, grads) of the torch GPT, as numpy."""
    import torch
    import torch.nn.functional as F

    params, ids, targets = problem(dtype)
    p = to_torch(params, requires_grad=True)
    logits = torch_gpt(p, torch.from_numpy(ids), attention)
    loss = F.cross_entropy(logits.reshape(-1, V), torch.from_numpy(targets).reshape(-1))
    loss.backward()
    grads = jax.tree.map(lambda t: t.grad, p, is_leaf=torch.is_tensor)
    return logits.detach().numpy(), loss.item(), to_numpy(grads)


# ------------------------------------------------------------------------ the fnn GPT
@functools.cache
def problem(dtype):
    """(params, ids, targets): params in general position, N(0, 0.3²) (layer norms'
    scales 1 + N(0, 0.3²)), not the tiny GPT-2 init, so that no term is negligible."""
    net = fnn.gpt(V, CONTEXT, D, H, L)
    # the shapes alone, traced: an eager init would compile each of its operations
    shapes = jax.eval_shape(lambda k: net.init(k, (T,), jnp.float64)[1], jax.random.key(0))
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        x = 0.3 * rng.normal(size=leaf.shape)
        return (1 + x if "scale" in jax.tree_util.keystr(path) else x).astype(dtype)

    params = jax.tree_util.tree_map_with_path(draw, shapes)
    ids = rng.integers(0, V, (B, T))
    targets = rng.integers(0, V, (B, T))
    return params, ids, targets


def fnn_run(dtype, head="logits", recompute="gelu", block_size=None):
    """(logits, loss, grads) from fnn: ONE jitted program a configuration; the gradients
    are the hand-written backward's (`value_and_grad(..., "manual")`)."""
    # every argument passed on: fnn_run(d, "fused", "gelu") and fnn_run(d, "fused", "gelu",
    # None) are one configuration, which functools.cache would key (and compile) twice
    return _fnn_run(dtype, head, recompute, block_size)


@functools.cache
def _fnn_run(dtype, head, recompute, block_size):
    net = fnn.gpt(V, CONTEXT, D, H, L, recompute=recompute, block_size=block_size, head=head)
    loss = fnn.softmax_cross_entropy() if head == "logits" else fnn.lm_cross_entropy(CHUNK)

    @jax.jit
    def program(params, ids, targets):
        value, grads = fnn.value_and_grad(net, loss, "manual")(params, ids, targets)
        out = fnn.apply(net, params, ids)
        logits = out if head == "logits" else tied_logits(out)
        return logits, value, grads

    return jax.device_get(program(*problem(dtype)))


CASES = [  # (head, recompute, block_size); the quick tier compiles the first two only
    ("logits", "gelu", None),
    ("fused", "gelu", None),
    pytest.param(("fused", "none", None), marks=pytest.mark.slow),
    pytest.param(("fused", "all", None), marks=pytest.mark.slow),
    pytest.param(("logits", "gelu", BLOCK_SIZE), marks=pytest.mark.slow),
]
DTYPES = [
    pytest.param(np.float64, F64_TOL, id="f64"),
    pytest.param(np.float32, F32_TOL, id="f32", marks=pytest.mark.slow),
]


def case_id(case):
    head, recompute, block_size = case
    return f"{head}-{recompute}" + ("" if block_size is None else f"-block{block_size}")


# ------------------------------------------------------------------------ the tests
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize(("dtype", "tol"), DTYPES)
def test_logits_loss_and_every_gradient_equal_torch(dtype, tol, case, attention):
    logits, value, grads = fnn_run(dtype, *case)
    want_logits, want_value, want_grads = torch_reference(dtype, attention)
    assert logits.dtype == value.dtype == dtype
    assert all(g.dtype == dtype for g in jax.tree.leaves(grads))
    assert rel_err(logits, want_logits) <= tol
    assert rel_err(value, want_value) <= tol
    assert mismatches(grads, want_grads, tol) == {}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_recompute_modes_give_identical_gradients(dtype):
    runs = [fnn_run(dtype, "fused", mode) for mode in ("none", "gelu", "all")]
    for run in runs[1:]:
        for got, want in zip(jax.tree.leaves(run), jax.tree.leaves(runs[0]), strict=True):
            np.testing.assert_array_equal(got, want)


def test_the_comparison_catches_a_wrong_gradient():
    """The helper reports a gradient off by 1e-8 relative in one element, and a planted
    bug: the tied table's gradient without the head's share (the embedding's only)."""
    _, _, grads = fnn_run(np.float64, "fused", "gelu")
    _, _, want = torch_reference(np.float64, "matmul")
    assert mismatches(grads, want, F64_TOL) == {}
    nudged = jax.tree.map(np.copy, grads)
    leaf = nudged["blocks"]["attn"]["W_qkv"]
    leaf[1, 2, 3] += 1e-8 * np.max(np.abs(leaf))
    assert set(mismatches(nudged, want, F64_TOL)) == {"['blocks']['attn']['W_qkv']"}
    # the planted bug: the fused head's loss hands back no table gradient, so fnn.gpt's
    # wte gradient is the embedding's share alone (as an untied head's would be)
    untied = dict(grads, wte=planted_untied_head_grads()["wte"])
    bad = mismatches(untied, want, F64_TOL)
    assert set(bad) == {"['wte']"} and bad["['wte']"] > 0.1, bad


def planted_untied_head_grads():
    net = fnn.gpt(V, CONTEXT, D, H, L, head="fused")
    good = fnn.lm_cross_entropy(CHUNK)

    def backward(residuals, dvalue=1.0):
        dpred = good.backward(residuals, dvalue)
        return dpred._replace(table=jnp.zeros_like(dpred.table))  # the head's share dropped

    loss = fnn.Loss(good.forward, backward, "lm_cross_entropy without dtable")
    return jax.jit(fnn.value_and_grad(net, loss, "manual"))(*problem(np.float64))[1]


# ------------------------------------------------------------------------ AdamW
@pytest.mark.slow  # torch.optim's first optimizer imports torch._dynamo: 1.5–6 s
def test_optax_adamw_and_torch_adamw_decay_the_same_way():
    """Both decay p by lr·wd·p in each step (optax.adamw's weight_decay is multiplied by
    the learning rate too), so the same numbers give the same steps."""
    import torch

    rng = np.random.default_rng(1)
    p0, grads = rng.normal(size=(3, 5)), rng.normal(size=(2, 3, 5))
    opt = optax.adamw(ADAM["lr"], ADAM["b1"], ADAM["b2"], ADAM["eps"],
                      weight_decay=ADAM["weight_decay"])  # fmt: skip
    p, state = jnp.asarray(p0), None
    state = opt.init(p)
    tp = torch.from_numpy(p0.copy()).requires_grad_(True)
    topt = torch_adamw([tp])
    for g in grads:
        updates, state = opt.update(jnp.asarray(g), state, p)
        p = optax.apply_updates(p, updates)
        tp.grad = torch.from_numpy(g.copy())
        topt.step()
    assert rel_err(p, tp.detach().numpy()) <= 1e-14


def torch_adamw(params):
    import torch

    return torch.optim.AdamW(
        params, lr=ADAM["lr"], betas=(ADAM["b1"], ADAM["b2"]), eps=ADAM["eps"],
        weight_decay=ADAM["weight_decay"],
    )  # fmt: skip


@functools.cache
def adamw_losses(dtype):
    """(fnn + optax losses, torch losses, fnn's final params, torch's): 10 AdamW steps,
    decay on every param, the loss before each step."""
    import torch
    import torch.nn.functional as F

    params, ids, targets = problem(dtype)
    net = fnn.gpt(V, CONTEXT, D, H, L)
    opt = optax.adamw(ADAM["lr"], ADAM["b1"], ADAM["b2"], ADAM["eps"],
                      weight_decay=ADAM["weight_decay"])  # fmt: skip
    grad = fnn.value_and_grad(net, fnn.softmax_cross_entropy(), "manual")

    @jax.jit
    def step(params, state):
        value, grads = grad(params, ids, targets)
        updates, state = opt.update(grads, state, params)
        return value, optax.apply_updates(params, updates), state

    state, ours = opt.init(params), []
    for _ in range(STEPS):
        value, params, state = step(params, state)
        ours.append(value)

    p = to_torch(problem(dtype)[0], requires_grad=True)
    topt, theirs = torch_adamw(jax.tree.leaves(p, is_leaf=torch.is_tensor)), []
    tids, ttargets = torch.from_numpy(ids), torch.from_numpy(targets).reshape(-1)
    for _ in range(STEPS):
        topt.zero_grad()
        loss = F.cross_entropy(torch_gpt(p, tids, "sdpa").reshape(-1, V), ttargets)
        loss.backward()
        topt.step()
        theirs.append(loss.item())
    return np.array(jax.device_get(ours)), np.array(theirs), jax.device_get(params), to_numpy(p)


@pytest.mark.slow  # a training run: one compile and 10 steps in each framework
@pytest.mark.parametrize(("dtype", "tol"), DTYPES)
def test_ten_adamw_steps_lose_as_torch_does(dtype, tol):
    ours, theirs, params, torch_params = adamw_losses(dtype)
    assert ours.dtype == dtype
    assert theirs[-1] < 0.8 * theirs[0]  # the steps move the loss: a test of something
    assert np.max(np.abs(ours - theirs) / np.abs(theirs)) <= tol
    # the params after the steps, but for the key bias: the loss does not depend on it
    # (softmax(q·(k + b)) = softmax(q·k) for each query), so its gradient is rounding
    # noise, which Adam's m/√v scales up to steps of ±lr in directions that differ between
    # the two programs (float32: the final b_k differ by 2e-2 relative)
    assert mismatches(without_key_bias(params), without_key_bias(torch_params), tol) == {}


def without_key_bias(params):
    attn = params["blocks"]["attn"]
    b_qkv = attn["b_qkv"]
    b_qv = np.concatenate([b_qkv[:, :D], b_qkv[:, 2 * D :]], axis=1)
    return {**params, "blocks": {**params["blocks"], "attn": {**attn, "b_qkv": b_qv}}}
