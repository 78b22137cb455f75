"""fnn.bench in tests: its matmul peak probe at 64³ instead of 1024³ (2048³ without
quick), for tests that time nothing that matters."""


def small_peak_probe(patch) -> None:
    """Patches, with `patch` (a `pytest.MonkeyPatch`), the probe size where fnn.bench
    reads it."""
    for module in ("fnn.bench.grid", "fnn.bench.yours"):
        patch.setattr(f"{module}.square_peak_size", lambda platform, quick: 64)
