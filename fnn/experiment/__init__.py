"""A configured training run end to end: the library side of `fnn train`.

    config = TrainConfig.for_dataset("wine", epochs=60)  # the data set's recipe, and yours
    run = prepare(config)                          # data, network, loss, optimiser, params
    check = verify_gradients(run)                  # manual backward vs jax.grad, float64
    result = train(run, out_dir, checkpoint_every=10)   # fit + checkpoints
    metrics = write_outputs(run, result, out_dir, wall_s=...)  # metrics.json, curves.png

`resume(out_dir)` rebuilds a run from the checkpoint in `out_dir`. Every output of a run
lives in one directory: `checkpoint.npz`, `metrics.json`, `curves.png`.
"""

from fnn.experiment.config import MODELS, TrainConfig, build_network, loss_name
from fnn.experiment.outputs import (
    CURVES,
    GRADIENTS,
    METRICS,
    device_info,
    metrics_record,
    write_outputs,
)
from fnn.experiment.recipes import RECIPE_FIELDS, RECIPES, recipe, recipe_fields
from fnn.experiment.run import (
    CHECK_EXAMPLES,
    CHECKPOINT,
    Model,
    Run,
    check_sample,
    fit_run,
    load_data,
    load_model,
    prepare,
    resume,
    save,
    train,
    verify_gradients,
)

__all__ = [
    "CHECKPOINT",
    "CHECK_EXAMPLES",
    "CURVES",
    "GRADIENTS",
    "METRICS",
    "MODELS",
    "RECIPES",
    "RECIPE_FIELDS",
    "Model",
    "Run",
    "TrainConfig",
    "build_network",
    "check_sample",
    "device_info",
    "fit_run",
    "load_data",
    "load_model",
    "loss_name",
    "metrics_record",
    "prepare",
    "recipe",
    "recipe_fields",
    "resume",
    "save",
    "train",
    "verify_gradients",
    "write_outputs",
]
