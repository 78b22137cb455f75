"""Is the bench's Equinox row fair? One SGD step of fnn's mlp_b256 workload (MLP
784-1024-1024-10 relu, batch 256, softmax cross-entropy), dispatched from Python step by
step as the bench's peers are, written four ways and timed in alternated rounds (each
form's ratio to jax.grad is taken within each round, then the median over rounds):

- `eqx vmap+filter_jit`: the bench's form: `jax.vmap` of each `eqx.nn.Linear` (Equinox's
  layers act on one example), `eqx.filter_grad`, `eqx.filter_jit`;
- `eqx batched+filter_jit`: the same modules applied to the batch as `x @ W.T + b`;
- `eqx vmap+jax.jit`: the bench's form, the model split with `eqx.partition` and the step
  under a plain `jax.jit` (no filtering at each call);
- `jax.grad`: plain JAX over a dict of `(in, out)` weights, `jax.jit`.

    python benchmarks/equinox_fairness.py [--rounds 7] [--steps 20]

Writes benchmarks/results/equinox_fairness.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from fit_overhead import machine

SIZES = (784, 1024, 1024, 10)
BATCH = 256


def _loss(logits, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))


def _mlp(layers, x):
    for layer in layers[:-1]:
        x = jax.nn.relu(layer(x))
    return layers[-1](x)


def builds(key):
    keys = jax.random.split(key, len(SIZES))
    layers = zip(SIZES[:-1], SIZES[1:], keys[1:], strict=True)
    model = [eqx.nn.Linear(i, o, key=k) for i, o, k in layers]
    optimizer = optax.sgd(1e-2)

    def vmapped(model, x, y):
        return _loss(_mlp([jax.vmap(m) for m in model], x), y)

    def batched(model, x, y):
        return _loss(_mlp([lambda x, m=m: x @ m.weight.T + m.bias for m in model], x), y)

    def filter_step(loss_fn):
        @eqx.filter_jit
        def step(state, x, y):
            model, opt = state
            grads = eqx.filter_grad(loss_fn)(model, x, y)
            updates, opt = optimizer.update(grads, opt, eqx.filter(model, eqx.is_array))
            return eqx.apply_updates(model, updates), opt

        return step, (model, optimizer.init(eqx.filter(model, eqx.is_array)))

    params, static = eqx.partition(model, eqx.is_array)

    @jax.jit
    def split_step(state, x, y):
        params, opt = state
        grads = jax.grad(lambda p: vmapped(eqx.combine(p, static), x, y))(params)
        updates, opt = optimizer.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    plain = [{"W": m.weight.T, "b": m.bias} for m in model]

    def plain_loss(p, x, y):
        return _loss(_mlp([lambda x, q=q: x @ q["W"] + q["b"] for q in p], x), y)

    @jax.jit
    def plain_step(state, x, y):
        p, opt = state
        grads = jax.grad(plain_loss)(p, x, y)
        updates, opt = optimizer.update(grads, opt, p)
        return optax.apply_updates(p, updates), opt

    return {
        "eqx vmap+filter_jit": filter_step(vmapped),
        "eqx batched+filter_jit": filter_step(batched),
        "eqx vmap+jax.jit": (split_step, (params, optimizer.init(params))),
        "jax.grad": (plain_step, (plain, optimizer.init(plain))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "equinox_fairness.json"
    )
    args = parser.parse_args()
    x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, SIZES[0]))
    y = jax.random.randint(jax.random.PRNGKey(2), (BATCH,), 0, SIZES[-1])
    forms = builds(jax.random.PRNGKey(0))
    states = {}
    for name, (step, state) in forms.items():
        states[name] = jax.block_until_ready(step(state, x, y))  # compile
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(args.rounds):
        for name, (step, _) in forms.items():
            state = states[name]
            start = time.perf_counter()
            for _ in range(args.steps):
                state = step(state, x, y)
            jax.block_until_ready(state)
            times[name].append(1e3 * (time.perf_counter() - start) / args.steps)
            states[name] = state
    reference = times["jax.grad"]
    rows = {
        name: {
            "step_ms_median": statistics.median(t),
            "step_ms_min": min(t),
            # the median over rounds of this form's time over jax.grad's in the same round
            "vs_jax_grad": statistics.median(a / b for a, b in zip(t, reference, strict=True)),
            "min_vs_jax_grad": min(t) / min(reference),
        }
        for name, t in times.items()
    }
    result = {"machine": machine(), "equinox": eqx.__version__, "rounds": args.rounds,
              "steps": args.steps, "forms": rows}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    host = result["machine"]
    print(f"mlp_b256 SGD step, {host['processor']} ({host['cores']} CPUs), jax {host['jax']}")
    for name, r in rows.items():
        print(f"{name:<24} median {r['step_ms_median']:7.2f} ms, best {r['step_ms_min']:7.2f} ms;"
              f" {r['vs_jax_grad']:.2f} x jax.grad (median round), "
              f"{r['min_vs_jax_grad']:.2f} x (best rounds)")  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
