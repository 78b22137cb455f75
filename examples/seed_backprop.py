"""The tutorial's experiment, reproduced with fnn.

A 100→5→4→1 all-sigmoid network, trained on 200 samples of uniform random data with
soft targets, by plain gradient descent (α = 0.1, 10 000 iterations), with the
hand-written backward. The tutorial's numpy code, with samples as COLUMNS, maps onto
fnn's batch-first rows like this (x = Xᵀ, the weights are the same matrices):

    tutorial (numpy)                         fnn
    Z1 = W1ᵀ·X + b1,  A1 = σ(Z1)             dense(5) then sigmoid():  A1 = σ(x·W1 + b1)
    Z3 = W3ᵀ·A2 + b3, A3 = σ(Z3)             dense(1); the last σ is fused into the loss
    J  = −Σ[Y log A3 + (1−Y) log(1−A3)]/m    sigmoid_binary_cross_entropy (on logits Z3)
    dZ3 = A3 − Y                             its backward: (σ(Z3) − Y)/m
    dW3 = A2·dZ3ᵀ/m,  db3 = mean(dZ3)        dense backward: dW = A2ᵀ·dZ3, db = Σ dZ3
    dZ2 = W3·dZ3 ⊙ A2(1−A2)                  dense backward dx = dZ3·W3ᵀ, then sigmoid's
    W ← W − α·dW                             optax.sgd(α)

One difference: the tutorial's `costfunction` takes `m` from `np.shape(Y)`, which is
(1, 200), so it divides by 1 and prints the SUM of the 200 losses. Its gradients do divide
by m = 200, so they are the gradients of the MEAN, which is the value fnn reports (the
tutorial's printed J is 200 × fnn's loss; tests/core/test_tutorial.py checks both trajectories
agree to 1e-12 in float64).

The whole loop is ONE compiled call: `lax.scan` over 10 000 steps.

Why the tutorial's loss is flat (0.69315 at iteration 0, 0.69313 at 10 000, in float32):

1. The targets are noise. Y is drawn independently of X, so nothing about Y can be
   learned from X; the best a network can do without memorising the 200 samples is to
   predict their mean Ȳ everywhere, whose loss is the binary cross-entropy of Ȳ against
   Y: 0.69313 for seed 0, which is where the tutorial's loss sits from the first steps.
   Even a network that memorised every sample could not go below the mean entropy of
   the soft targets themselves, 0.521 for seed 0 (½ in expectation for uniform
   targets). The script prints both floors.
2. Almost no gradient reaches the first layers. With weights U(0, 1)·0.01, each dense
   layer passes down a cotangent a hundred or more times smaller than the one it
   receives, and each sigmoid (σ′ ≤ ¼) four times smaller. `fnn.backward_trace`
   measures the RMS of ∂J/∂Z3, ∂J/∂A2, ..., ∂J/∂Z1 (the tutorial's dZ3, dA2, ..., dZ1):
   at iteration 0, 1.4·10⁻³ for dZ3 and 5.5·10⁻⁹ for dZ1, 250 000 times smaller, and
   dW1's RMS is 2.1·10⁻⁸, so a step of lr 0.1 moves W1 (RMS 0.0058) by about 4·10⁻⁷ of itself
   (float32, seed 0; the script prints them, and its middle panel draws them over the
   10 000 steps: they barely change).

The same network on a target it CAN learn (1 where the mean of the first ten features is
above its median) tells the two causes apart: with the tutorial's initialisation its loss
stays at 0.69315 for all 10 000 steps (the deltas vanish before they reach W1), and with a
zero-mean initialisation (`glorot_normal`) and the same learning rate it falls from 0.747
to 0.0029: at iteration 0 its dZ1 has RMS 6·10⁻⁵, 6 000 times the 1.0·10⁻⁸ of the
tutorial's initialisation on the same target (right panel). Run:

    python examples/seed_backprop.py --out examples/out
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnn


def tutorial_data(seed: int = 0, n_features: int = 100, m: int = 200):
    """X = rand(100, 200), Y = rand(1, 200) as in the tutorial, returned batch-first."""
    rng = np.random.default_rng(seed)
    X = rng.random((n_features, m))  # features × samples, as the tutorial
    Y = rng.random((1, m))  # soft targets in [0, 1]
    return X.T, Y.T  # fnn is batch-first: x (m, 100), y (m, 1)


def tutorial_network(w_init="tutorial") -> fnn.Layer:
    """100→5→4→1, sigmoid hidden layers, biases 0, logits out; weights U(0, 1)·0.01 as in
    the tutorial, or any fnn initialiser (e.g. "glorot_normal")."""
    if w_init == "tutorial":
        w_init = fnn.initializers.uniform(0.01)
    return fnn.mlp([5, 4, 1], "sigmoid", w_init=w_init, b_init="zeros")


def learnable_targets(x):
    """1 where the mean of the first ten features is above its median, else 0: a target
    that depends on x, which the tutorial's network can fit. Shape (m, 1)."""
    score = x[:, :10].mean(axis=1)
    return (score > np.median(score)).astype(x.dtype)[:, None]


def floors(y) -> tuple[float, float]:
    """`(constant, entropy)` for soft targets y in [0, 1]: the mean binary cross-entropy
    of predicting ȳ for every sample (the best a network that ignores x can do), and the
    mean entropy of the targets themselves (what predicting each y exactly would give)."""
    y = np.clip(np.asarray(y, np.float64), 1e-12, 1 - 1e-12)
    mean = y.mean()
    constant = -np.mean(y * np.log(mean) + (1 - y) * np.log(1 - mean))
    entropy = -np.mean(y * np.log(y) + (1 - y) * np.log(1 - y))
    return float(constant), float(entropy)


def gradient_descent(net, loss, params, x, y, *, lr: float, steps: int, mode: str = "manual"):
    """`steps` full-batch gradient-descent steps in one `lax.scan`.

    Returns the final params and the loss before each step, shape (steps,).
    """
    params, losses, _ = descend(net, loss, params, x, y, lr=lr, steps=steps, every=steps, mode=mode)
    return params, losses


def descend(net, loss, params, x, y, *, lr: float, steps: int, every: int, mode: str = "manual"):
    """`gradient_descent`, also keeping the params before every `every`-th step.

    Returns the final params, the loss before each step (steps,), and the snapshots: a
    params pytree with a leading axis of `steps // every` (before steps 0, every, ...).
    """
    optimizer = optax.sgd(lr)
    step = fnn.train.make_train_step(net, loss, optimizer, mode, jit=False)

    @jax.jit
    def run(params):
        def body(train_state, _):
            train_state, metrics = step(train_state, (x, y))
            return train_state, metrics["loss"]

        def chunk(train_state, _):  # `every` steps; the params they started from
            snapshot = train_state.params
            train_state, losses = jax.lax.scan(body, train_state, length=every)
            return train_state, (losses, snapshot)

        start = fnn.TrainState.create(net, params, optimizer)
        train_state, (losses, snapshots) = jax.lax.scan(chunk, start, length=steps // every)
        return train_state.params, losses.reshape(-1), snapshots

    return run(params)


# The tutorial's names for the cotangent reaching each layer's output.
DELTAS = {"net[0]": "dZ1", "net[1]": "dA1", "net[2]": "dZ2", "net[3]": "dA2", "net[4]": "dZ3"}


def delta_rms(net, loss, snapshots, x, y) -> dict[str, np.ndarray]:
    """RMS of the cotangent reaching each layer's output (dZ3, dA2, ..., dZ1), and of
    dW1, at each snapshot, from the hand-written backward (`fnn.backward_trace`)."""
    snapshots = jax.device_get(snapshots)  # numpy: slicing it compiles nothing
    count = len(jax.tree.leaves(snapshots)[0])
    rows: dict[str, list[float]] = {name: [] for name in [*DELTAS.values(), "dW1"]}
    for i in range(count):
        params = jax.tree.map(lambda a, i=i: a[i], snapshots)
        trace = fnn.backward_trace(net, loss, params, x, y)
        for path, name in DELTAS.items():
            rows[name].append(trace[path].rms_dy)
        rows["dW1"].append(float(np.sqrt(np.mean(np.square(trace["net[0]"].grads["W"])))))
    return {name: np.asarray(values) for name, values in rows.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=100, help="steps between traces")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("examples/out"))
    args = parser.parse_args(argv)
    if args.steps % args.every:
        parser.error(f"--steps ({args.steps}) must be a multiple of --every ({args.every})")

    x, y = tutorial_data(args.seed)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    loss = fnn.sigmoid_binary_cross_entropy()
    runs = {  # label: (network, targets)
        "tutorial: random targets": (tutorial_network(), y),
        "learnable target, tutorial init": (tutorial_network(), learnable_targets(x)),
        "learnable target, glorot_normal init": (tutorial_network("glorot_normal"),
                                                 learnable_targets(x)),
    }  # fmt: skip
    results = {}
    for label, (net, targets) in runs.items():
        params = fnn.init(net, jax.random.PRNGKey(args.seed), (100,))
        start = time.perf_counter()
        _, losses, snapshots = descend(
            net, loss, params, x, targets, lr=args.lr, steps=args.steps, every=args.every
        )
        losses = np.asarray(losses)  # one transfer, after the compiled loop
        elapsed = time.perf_counter() - start
        results[label] = (losses, delta_rms(net, loss, snapshots, x, targets))
        print(f"{label}: {args.steps} steps in {elapsed:.2f} s (compile included)")

    losses, deltas = results["tutorial: random targets"]
    for i in range(0, args.steps, 1000):
        print(f"iteration {i:>5}: loss {losses[i]:.8f}")
    print(f"final loss {losses[-1]:.8f}")
    constant, entropy = floors(y)
    print(f"floors of the random targets: predicting their mean {constant:.5f}, "
          f"predicting each exactly {entropy:.5f}")  # fmt: skip
    print("RMS of what flows back (iteration 0 -> last trace):")
    for name, values in deltas.items():
        print(f"  {name:>3}: {values[0]:.3g} -> {values[-1]:.3g}")
    for label, (curve, rms) in list(results.items())[1:]:
        print(f"{label}: loss {curve[0]:.5f} -> {curve[-1]:.5f}; at iteration 0 "
              f"dZ3 {rms['dZ3'][0]:.3g}, dZ1 {rms['dZ1'][0]:.3g}")  # fmt: skip
    path = args.out / "seed_backprop.png"
    plot(results, args.every, (constant, entropy), path)
    print(f"loss curves and deltas: {path}")


def plot(results, every: int, floors_: tuple[float, float], path: Path) -> None:
    """Left: each run's loss; middle and right: the deltas of the tutorial's run and of
    the glorot_normal run, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for label, (losses, _) in results.items():
        axes[0].plot(np.arange(len(losses)), losses, lw=1.5, label=label)
    for value, name in zip(floors_, ("mean-prediction floor", "entropy floor"), strict=True):
        axes[0].axhline(value, ls=":", color="grey")
        axes[0].annotate(f"{name} {value:.3f}", (0, value), fontsize=8, va="bottom")
    axes[0].set(xlabel="iteration", ylabel="binary cross-entropy J (log scale)",
                yscale="log", title="Loss")  # fmt: skip
    axes[0].legend(fontsize=8)
    panels = [("tutorial: random targets", axes[1]),
              ("learnable target, glorot_normal init", axes[2])]  # fmt: skip
    for label, ax in panels:
        _, deltas = results[label]
        steps = np.arange(len(next(iter(deltas.values())))) * every
        for name, values in deltas.items():
            ax.plot(steps, values, lw=1.5, label=name)
        ax.set(xlabel="iteration", ylabel="RMS (log scale)", yscale="log",
               title=f"What flows back: {label}")  # fmt: skip
        ax.legend(fontsize=8, ncol=2)
    for ax in axes:
        ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
