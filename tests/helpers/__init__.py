"""Shared by the test modules: `battery` (inputs and checks), `planted` (the
`@planted_bug` mark and the factories that must carry one), `parallel_worker` (the
subprocess that runs with forced devices), `bench` (fnn.bench's peak probe made small).
`tests/` is on `sys.path` (pyproject's `pythonpath`), so a test imports
`from helpers.battery import ...`."""
