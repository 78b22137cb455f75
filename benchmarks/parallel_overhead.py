"""What the data-parallel path costs on CPU, where forced devices share the same cores.

`XLA_FLAGS=--xla_force_host_platform_device_count=8` splits one CPU into 8 XLA devices;
they share the machine's cores, so sharding cannot make anything faster here. This
measures the overhead: time per training step of

- `plain`: `fnn.make_train_step` on one device;
- `mesh1`: `fnn.train.parallel.make_sharded_train_step` on a 1-device mesh (the sharded code
  path with nothing to split: the cost of the path itself);
- `mesh8`: the same on the 8-device mesh (batch split 8 ways, all-reduce of gradients);

and per epoch of `fit` on digits (plain, and `mesh=` a 1- and the 8-device mesh: the
sharded epoch gathers each process's rows of every batch on the host). Every step is
waited for before the next is dispatched, in every variant (on several CPU devices fnn's
sharded step waits for itself anyway: docs/scaling.md, "one caveat").
Rounds alternate between variants; medians are reported; compilation happens before
timing. The script re-runs itself in a subprocess with XLA_FLAGS set and writes
benchmarks/results/parallel_overhead.json.

    python benchmarks/parallel_overhead.py [--reps 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEVICES = 8
OUT = Path(__file__).parent / "results" / "parallel_overhead.json"
WORKLOADS = {  # name: (input width, layer widths, batch, steps per timed unit)
    "digits_mlp_b128": (64, (256, 128, 10), 128, 50),
    "mlp_784_1024x2_b256": (784, (1024, 1024, 10), 256, 5),
}


def child(reps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    import fnn
    from fnn import experiment
    from fnn.train import parallel

    mesh8, mesh1 = parallel.make_data_mesh(DEVICES), parallel.make_data_mesh(1)
    results = {"devices": jax.device_count(), "steps": {}, "epochs": {}}
    for name, (width, features, batch, steps) in WORKLOADS.items():
        net, loss = fnn.mlp(features, "relu"), fnn.softmax_cross_entropy()
        params = fnn.init(net, jax.random.PRNGKey(0), (width,), jnp.float32)
        x = jax.random.normal(jax.random.PRNGKey(1), (batch, width), jnp.float32)
        y = jax.random.randint(jax.random.PRNGKey(2), (batch,), 0, features[-1])
        opt = optax.sgd(0.01)
        state = fnn.TrainState.create(net, params, opt)
        variants = {"plain": (fnn.make_train_step(net, loss, opt), state, (x, y))}
        for label, mesh in (("mesh1", mesh1), ("mesh8", mesh8)):
            variants[label] = (
                parallel.make_sharded_train_step(net, loss, opt, mesh=mesh),
                parallel.replicate(state, mesh),
                parallel.shard_batch((x, y), mesh, batch),
            )
        units = {}
        for label, (step, state, b) in variants.items():

            def unit(state=state, step=step, b=b, steps=steps):
                for _ in range(steps):  # one step in flight at a time (see docs/scaling.md)
                    state, _ = jax.block_until_ready(step(state, b))

            unit()  # compile and warm up
            units[label] = unit
        times = rotate(units, reps)
        per_step = {k: statistics.median(v) / steps * 1e3 for k, v in times.items()}
        results["steps"][name] = {
            "batch": batch,
            "ms_per_step": per_step,
            "mesh1_over_plain": per_step["mesh1"] / per_step["plain"],
            "mesh8_over_plain": per_step["mesh8"] / per_step["plain"],
        }
    run = experiment.prepare(experiment.TrainConfig(hidden=(256, 128), epochs=1, batch_size=32))
    data = run.data

    def fit_unit(mesh):
        def unit():
            fnn.train.fit(
                run.net,
                run.loss,
                run.optimizer,
                run.params,
                (data.x_train, data.y_train),
                key=run.key,
                epochs=1,
                batch_size=32,
                eval_train=False,
                progress=False,
                mesh=mesh,
            )

        unit()
        return unit

    units = {"plain": fit_unit(None), "mesh1": fit_unit(mesh1), "mesh8": fit_unit(mesh8)}
    times = rotate(units, reps)
    per_epoch = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    results["epochs"]["digits_fit_b32"] = {
        "ms_per_epoch": per_epoch,
        "mesh1_over_plain": per_epoch["mesh1"] / per_epoch["plain"],
        "mesh8_over_plain": per_epoch["mesh8"] / per_epoch["plain"],
    }
    return results


def rotate(units: dict, reps: int) -> dict[str, list[float]]:
    """`reps` rounds of every unit in turn, the order rotated each round; seconds."""
    names = list(units)
    times = {n: [] for n in names}
    for r in range(reps):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            units[n]()
            times[n].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.reps)))
        return
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={DEVICES}"}
    env["JAX_PLATFORMS"] = "cpu"
    done = subprocess.run(
        [sys.executable, __file__, "--child", "--reps", str(args.reps)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=True,
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    result = json.loads(line.removeprefix("RESULT "))
    result["machine"] = {
        "processor": cpu_model(),
        "cores": os.cpu_count(),
        "forced_devices": DEVICES,
        "note": "forced CPU devices share the same cores: no speed-up is possible here",
        "load_average_1min_after": os.getloadavg()[0],  # other work on the machine
    }
    import jax

    result["machine"]["jax"] = jax.__version__
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
