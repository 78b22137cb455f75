"""A small causal transformer, trained with a hand-written attention backward, learns to
look back in time.

The task: each input is a sequence of random tokens, and the target at position `t` is
the token at position `t − lag` (a "blank" class for the first `lag` positions, which
have nothing that far back). No fixed function of the current token can do this: the
model has to find, at every position, the position `lag` steps earlier and copy what it
holds. That is what self-attention is for, and the position table is what tells it
where "`lag` steps earlier" is.

The network, one block of a decoder-only transformer:

    ids (batch, T) → embedding → + positional_embedding          (batch, T, D)
      → x + multi_head_attention(layer_norm(x), causal)          mixes positions
      → x + dense(gelu(dense(layer_norm(x))))                    per position
      → layer_norm → dense(vocab + 1)                            logits per position

The loss is the softmax cross-entropy of every position's logits against its target.

**How the gradient gets through attention.** Per head, the forward is

    S = q·kᵀ/√dh,   P = softmax(S) (row by row),   O = P·v,

with `q, k, v` linear in the layer's input. fnn's backward for it (fnn/attention.py)
runs these three lines in reverse, by hand:

1. `O = P·v` is a matrix product, so `dv = Pᵀ·dO` and `dP = dO·vᵀ`. The transpose in
   `dv` collects, for each key position `j`, the gradient from every query that read it.
2. The softmax of a row couples all its entries through the normaliser:
   `dS = P ⊙ (dP − rowsum(dP ⊙ P))`. The subtracted row sum is that coupling: raising one
   weight lowers all the others.
3. `S = q·kᵀ/√dh` gives `dq = dS·k/√dh` and `dk = dSᵀ·q/√dh`, and the three gradients
   `[dq | dk | dv]` flow back through the one projection `x·W_qkv` that made `q, k, v`:
   `dW_qkv = xᵀ·[dq | dk | dv]`, `dx = [dq | dk | dv]·W_qkvᵀ`.

The causal mask sets the scores of future positions to a huge negative number before the
softmax, so their weights are exactly 0; step 2 then gives them a zero gradient with no
mask of its own. The script first checks this whole backward against `jax.vjp` (in
float64), then trains with it.

    python examples/attention_sequence.py --epochs 8 --seed 0
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fnn


def make_data(n: int, *, vocab: int, length: int, lag: int, seed: int):
    """`n` sequences of `length` random tokens in `[0, vocab)` and their lag-copy targets:
    `y[:, t] = x[:, t − lag]` for `t ≥ lag`, else the blank class `vocab`."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab, size=(n, length), dtype=np.int32)
    y = np.full((n, length), vocab, dtype=np.int32)
    y[:, lag:] = x[:, :-lag]
    return x, y


def model(vocab: int, width: int = 32, heads: int = 2) -> fnn.Layer:
    """One causal transformer block over `vocab` input tokens (`fnn.transformer`: token
    and position embeddings, causal self-attention and a feed-forward block, each behind
    a layer_norm and a skip connection); `vocab + 1` output classes (the tokens and the
    blank)."""
    return fnn.transformer(vocab, width, heads, 2 * width, outputs=vocab + 1)


def train(
    *,
    epochs: int = 8,
    seed: int = 0,
    vocab: int = 8,
    length: int = 10,
    lag: int = 3,
    n_train: int = 2048,
    n_test: int = 512,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    progress: bool = False,
) -> dict:
    """Trains the model on the lag-copy task; returns the final test accuracy (per
    position), the history and the training time."""
    x_train, y_train = make_data(n_train, vocab=vocab, length=length, lag=lag, seed=seed)
    x_test, y_test = make_data(n_test, vocab=vocab, length=length, lag=lag, seed=seed + 1)
    net = model(vocab)
    params = fnn.init(net, jax.random.PRNGKey(seed), (length,))
    optimizer = optax.adam(learning_rate)
    start = time.perf_counter()
    result = fnn.fit(
        net,
        fnn.softmax_cross_entropy(),
        optimizer,
        fnn.TrainState.create(net, params, optimizer),
        (jnp.asarray(x_train), jnp.asarray(y_train)),
        (jnp.asarray(x_test), jnp.asarray(y_test)),
        key=jax.random.PRNGKey(seed + 1),
        epochs=epochs,
        batch_size=batch_size,
        mode="manual",
        task="classification",
        eval_train=False,
        progress=progress,
    )
    return {
        "test_accuracy": result.history["test_accuracy"][-1],
        "history": result.history,
        "seconds": time.perf_counter() - start,
        "params": result.state.params,
    }


def check_backward(vocab: int = 8, length: int = 10) -> fnn.CheckResult:
    """The whole network's hand-written backward against jax.vjp, in float64."""
    return fnn.check_layer(
        model(vocab, width=8),
        (length,),
        make_input=lambda key, shape, dtype: jax.random.randint(key, shape, 0, vocab),
        finite_differences=False,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lag", type=int, default=3)
    args = parser.parse_args(argv)

    print(check_backward())
    run = train(epochs=args.epochs, seed=args.seed, lag=args.lag, progress=True)
    print(
        f"lag-{args.lag} copy: test accuracy {run['test_accuracy']:.4f} per position after "
        f"{args.epochs} epochs ({run['seconds']:.1f} s, hand-written backward)"
    )
    return run


if __name__ == "__main__":
    main()
