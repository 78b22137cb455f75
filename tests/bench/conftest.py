"""The bench tests: every module runs with the small matmul peak probe."""

import pytest
from helpers.bench import small_peak_probe as patch_peak_probe


@pytest.fixture(scope="module", autouse=True)
def small_peak_probe():
    """A 64³ matmul peak probe for the module's tests (`helpers.bench`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch_peak_probe(patch)
        yield
