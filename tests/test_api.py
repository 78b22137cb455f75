"""The public API: everything in __all__ imports and is documented."""

import inspect

import fnn


def test_all_names_exist_and_have_docstrings():
    for name in fnn.__all__:
        obj = getattr(fnn, name)
        assert inspect.getdoc(obj), f"fnn.{name} has no docstring"


def test_all_is_sorted_and_unique():
    assert list(fnn.__all__) == sorted(set(fnn.__all__))


def test_every_layer_factory_returns_a_layer_and_every_loss_a_loss():
    from fnn.activations import ACTIVATIONS
    from fnn.losses import LOSSES

    assert all(isinstance(factory(), fnn.Layer) for factory in ACTIVATIONS.values())
    assert all(isinstance(factory(), fnn.Loss) for factory in LOSSES.values())
