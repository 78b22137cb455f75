"""DP-SGD on handwritten digits: per-example gradients by hand, clipped and noised.

Each step of differentially private SGD (Abadi et al., 2016):

    g_i  = ∇θ ℓ(net(θ, x_i), y_i)                 per example  (fnn.per_example_grads)
    ĝ_i  = g_i · min(1, C / ‖g_i‖)                clip each example to norm C
    g̃    = (Σ_i ĝ_i + N(0, σ²C² I)) / B           sum, Gaussian noise, average
    θ   ← optax update with g̃

The per-example gradients come from the hand-written backward (outer products of each
example's activations and deltas), not from vmap; the noise from an explicit PRNG key,
split per step. No privacy accounting here: the point is the gradient computation.

    python examples/dp_sgd_digits.py                  # C = 1, σ = 1, 20 epochs
    python examples/dp_sgd_digits.py --sigma 0        # clipping only

Prints the test accuracy of the DP-SGD run next to a plain (non-private) SGD run of the
same network from the same init (on the 2-core AMD EPYC CPU: 0.933 vs 0.975 test
accuracy, 5 s of DP-SGD training).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax
from jax import lax

import fnn
from fnn.data import load_dataset
from fnn.per_example import clip_and_noise


def make_dp_epoch(net, loss, optimizer, *, batch_size, clip_norm, sigma):
    """`epoch(params, opt_state, key, x, y) -> (params, opt_state, mean_loss)`: one
    shuffled epoch of DP-SGD steps in one compiled `lax.scan`."""

    def step(carry, batch):
        params, opt_state = carry
        x, y, key = batch
        losses, grads = fnn.per_example_value_and_grads(net, loss, params, x, y)
        private = clip_and_noise(grads, clip_norm, sigma, key=key)  # (Σ clip(g_i) + noise) / B
        updates, opt_state = optimizer.update(private, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), jnp.mean(losses)

    @jax.jit
    def epoch(params, opt_state, key, x, y):
        order_key, noise_key = jax.random.split(key)
        n_batches = x.shape[0] // batch_size
        order = jax.random.permutation(order_key, x.shape[0])[: n_batches * batch_size]
        order = order.reshape(n_batches, batch_size)
        keys = jax.random.split(noise_key, n_batches)  # one noise key per step
        (params, opt_state), losses = lax.scan(
            step, (params, opt_state), (x[order], y[order], keys)
        )
        return params, opt_state, jnp.mean(losses)

    return epoch


def accuracy(net, params, x, y) -> float:
    return float(jnp.mean(jnp.argmax(fnn.apply(net, params, x), axis=-1) == y))


def train(private: bool, args, data) -> tuple[float, float]:
    """Trains from seed 0; returns (test accuracy, seconds)."""
    net = fnn.mlp([64, 10], "relu")
    loss = fnn.softmax_cross_entropy()
    init_key, data_key = jax.random.split(jax.random.PRNGKey(args.seed))
    params = fnn.init(net, init_key, (data.x_train.shape[1],), jnp.float32)
    optimizer = optax.sgd(args.lr, momentum=0.9)
    opt_state = optimizer.init(params)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    if private:
        epoch = make_dp_epoch(
            net, loss, optimizer, batch_size=args.batch_size, clip_norm=args.clip, sigma=args.sigma
        )
    else:
        epoch_fn = fnn.train.make_epoch_fn(net, loss, optimizer, batch_size=args.batch_size)

        def epoch(params, opt_state, key, x, y):
            train_state, mean_loss = epoch_fn(
                fnn.TrainState(params, opt_state), key, jnp.int32(0), x, y
            )
            return train_state.params, train_state.opt_state, mean_loss

    start = time.perf_counter()
    for e in range(args.epochs):
        params, opt_state, _ = epoch(params, opt_state, jax.random.fold_in(data_key, e), x, y)
    seconds = time.perf_counter() - start
    return accuracy(net, params, jnp.asarray(data.x_test), jnp.asarray(data.y_test)), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--clip", type=float, default=1.0, help="per-example norm bound C")
    parser.add_argument("--sigma", type=float, default=1.0, help="noise multiplier σ")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = load_dataset("digits", seed=args.seed)
    dp_acc, dp_s = train(True, args, data)
    plain_acc, plain_s = train(False, args, data)
    print(
        f"digits, 64-64-10 relu, {args.epochs} epochs of batch {args.batch_size}, "
        f"SGD lr {args.lr:g} momentum 0.9"
    )
    print(
        f"  DP-SGD (C={args.clip:g}, σ={args.sigma:g}): test accuracy {dp_acc:.4f} ({dp_s:.1f} s)"
    )
    print(f"  plain SGD:               test accuracy {plain_acc:.4f} ({plain_s:.1f} s)")


if __name__ == "__main__":
    main()
