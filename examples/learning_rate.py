"""Why the learning rate matters, as the tutorial shows it.

Part 1 reproduces the tutorial's table: minimise x² (gradient 2x) from x = 5 with
learning rate 1. The update x ← x − lr·2x sends 5 to −5 and back forever. The gradient
comes from fnn's hand-written mean-squared-error backward (L = mean((x − 0)²) = x²,
dL/dx = 2x) and the update from optax.sgd, the same machinery a training run uses.

Part 2 sweeps the learning rate on the tutorial's 100→5→4→1 sigmoid network, on a target
it can learn (`seed_backprop.learnable_targets`: the tutorial's own random targets cannot
be learned, see seed_backprop.py) with zero-mean `glorot_normal` weights, 2 000 full-batch
steps, and plots the loss curves (float64, seed 0):

    too small (lr 0.01)   barely moves: 0.695 → 0.692
    good (lr 1)           bumps between steps 200 and 550, then falls to 0.0011
    oscillating (lr 100)  jumps between two losses every step (about 20 and 6), far
                          above where it started, and stays there
    diverging (lr 1000)   thrown to 239 within ten steps; the sigmoids saturate, so
                          the loss jumps between 239 and 11 instead of growing forever

Part 3 shows what a training run does when the learning rate is far too large: on the
diabetes regression set, SGD at 0.3 trains and at 0.5 the loss turns NaN in the first
epoch; `fit` stops with a message naming the epoch and the learning rate and hands back
the last good state (`fnn train` exits 1 with the same message, keeping its checkpoint).

    python examples/learning_rate.py --out examples/out
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnn

# one learning rate per regime, on the tutorial's network and a learnable target
SWEEP = {"too small": 0.01, "good": 1.0, "oscillating": 100.0, "diverging": 1000.0}


def x_squared_table(x0: float = 5.0, lr: float = 1.0, rounds: int = 6) -> list[tuple]:
    """Rows (round, value, gradient × lr, new value) of gradient descent on x².

    The gradient is fnn's mean_squared_error backward at target 0; the update is
    optax.sgd(lr). Runs in float64 when 64-bit types are enabled, else float32.
    """
    loss = fnn.mean_squared_error()
    optimizer = optax.sgd(lr)
    x = jnp.asarray([x0], jnp.result_type(float))
    opt_state = optimizer.init(x)
    rows = []
    for i in range(1, rounds + 1):
        value, residuals = loss.forward(x, jnp.zeros_like(x))  # L = x²
        grad = loss.backward(residuals, jnp.ones_like(value))  # dL/dx = 2x
        updates, opt_state = optimizer.update(grad, opt_state)  # −lr·2x
        new_x = optax.apply_updates(x, updates)  # x ← x − lr·2x
        rows.append((i, float(x[0]), float(-updates[0]), float(new_x[0])))
        x = new_x
    return rows


def sweep(steps: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
    """Loss curves of the tutorial's network (glorot_normal weights) on a learnable target,
    for each learning rate in SWEEP."""
    from seed_backprop import gradient_descent, learnable_targets, tutorial_data, tutorial_network

    with jax.enable_x64(True):
        x = jnp.asarray(tutorial_data(seed)[0], jnp.float64)
        y = learnable_targets(x)
        net, loss = tutorial_network("glorot_normal"), fnn.sigmoid_binary_cross_entropy()
        params = fnn.init(net, jax.random.PRNGKey(seed), (100,), jnp.float64)
        curves = {}
        for label, lr in SWEEP.items():
            _, losses = gradient_descent(net, loss, params, x, y, lr=lr, steps=steps)
            curves[label] = np.asarray(losses)
    return curves


def divergence_demo(learning_rates=(0.3, 0.5), epochs: int = 5) -> dict[float, str]:
    """Trains a small MLP on diabetes with SGD at each learning rate; what happened."""
    from fnn.data import load_dataset
    from fnn.train import NonFiniteLossError, fit
    from fnn.train.optim import make_optimizer

    data = load_dataset("diabetes")
    net = fnn.mlp([16, data.output_width], "relu")
    params = fnn.init(net, jax.random.PRNGKey(0), data.feature_shape)
    outcomes = {}
    for lr in learning_rates:
        optimizer = make_optimizer("sgd", lr)  # records the learning rate for the message
        try:
            result = fit(
                net,
                fnn.mean_squared_error(),
                optimizer,
                fnn.TrainState.create(net, params, optimizer),
                (data.x_train, data.y_train),
                (data.x_test, data.y_test),
                key=jax.random.PRNGKey(1),
                epochs=epochs,
                batch_size=32,
                progress=False,
            )
            outcomes[lr] = f"trained: test R² {result.history['test_r2'][-1]:.3f}"
        except NonFiniteLossError as error:
            outcomes[lr] = f"stopped: {error} (last good epoch: {error.last_good.epoch})"
    return outcomes


def plot_sweep(curves: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, losses in curves.items():
        ax.plot(losses, lw=1.0, label=f"{label} (lr = {SWEEP[label]:g})")
    ax.set_yscale("log")
    ax.set(
        xlabel="iteration",
        ylabel="binary cross-entropy (log scale)",
        title="Learning rate on the tutorial's 100→5→4→1 network (learnable target)",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=Path("examples/out"))
    args = parser.parse_args(argv)

    print("Gradient descent on x² from x = 5 with learning rate 1 (the tutorial's table):")
    print(f"{'round':>5} {'value':>8} {'gradient × lr':>14} {'new value':>10}")
    for i, value, step, new in x_squared_table():
        print(f"{i:>5} {value:>8g} {step:>14g} {new:>10g}")

    curves = sweep(args.steps)
    for label, losses in curves.items():
        tail = ", ".join(f"{v:.6g}" for v in losses[-4:])
        print(f"lr {SWEEP[label]:>7g} ({label}): first {losses[0]:.6g}, last four {tail}")
    path = args.out / "learning_rate_sweep.png"
    plot_sweep(curves, path)
    print(f"sweep plot: {path}")

    print("A learning rate far too large in a real training run (diabetes, SGD):")
    for lr, outcome in divergence_demo().items():
        print(f"  lr {lr:g}: {outcome}")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    main()
