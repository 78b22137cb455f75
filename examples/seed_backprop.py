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
tutorial's printed J is 200 × fnn's loss; tests/test_tutorial.py checks both trajectories
agree to 1e-12 in float64).

The whole loop is ONE compiled call: `lax.scan` over 10 000 steps. Run:

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


def tutorial_network() -> fnn.Layer:
    """100→5→4→1, sigmoid hidden layers, weights U(0, 1)·0.01, biases 0, logits out."""
    return fnn.mlp([5, 4, 1], "sigmoid", w_init=fnn.initializers.uniform(0.01), b_init="zeros")


def gradient_descent(net, loss, params, x, y, *, lr: float, steps: int, mode: str = "manual"):
    """`steps` full-batch gradient-descent steps in one `lax.scan`.

    Returns the final params and the loss before each step, shape (steps,).
    """
    optimizer = optax.sgd(lr)
    step = fnn.train.make_train_step(net, loss, optimizer, mode, jit=False)

    @jax.jit
    def run(params):
        def body(train_state, _):
            train_state, metrics = step(train_state, (x, y))
            return train_state, metrics["loss"]

        start = fnn.TrainState.create(net, params, optimizer)
        train_state, losses = jax.lax.scan(body, start, length=steps)
        return train_state.params, losses

    return run(params)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("examples/out"))
    args = parser.parse_args(argv)

    x, y = tutorial_data(args.seed)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    net, loss = tutorial_network(), fnn.sigmoid_binary_cross_entropy()
    params = fnn.init(net, jax.random.PRNGKey(args.seed), (100,))

    start = time.perf_counter()
    params, losses = gradient_descent(net, loss, params, x, y, lr=args.lr, steps=args.steps)
    losses = np.asarray(losses)  # one transfer, after the compiled loop
    elapsed = time.perf_counter() - start
    for i in range(0, args.steps, 1000):
        print(f"iteration {i:>5}: loss {losses[i]:.8f}")
    print(f"final loss {losses[-1]:.8f}; {args.steps} steps in {elapsed:.2f} s (compile included)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(args.steps), losses, lw=1.5)  # one line, not 10 000 markers
    ax.set(xlabel="iteration", ylabel="binary cross-entropy J", title="The tutorial's network")
    ax.grid(alpha=0.3)
    args.out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(args.out / "seed_loss.png", dpi=120)
    print(f"loss curve: {args.out / 'seed_loss.png'}")


if __name__ == "__main__":
    main()
