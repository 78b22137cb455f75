"""Several processes (hosts) in one run: joining them through `jax.distributed`.

Call `initialize_distributed(...)` first, in every process, before any other JAX call;
`fnn.train.parallel.make_data_mesh` then spans the devices of all processes. On CPU the
cross-process collectives run over gloo (TCP). Process 0 alone writes outputs
(`is_main_process`).
"""

from __future__ import annotations

import ipaddress
import socket
import time

import jax

from fnn.errors import DistributedError, SettingError, renamed_settings

DEFAULT_TIMEOUT_S = 60  # how long a process waits for the coordinator and the others


def parse_address(address: str) -> tuple[str, int]:
    """Splits "HOST:PORT" into `(host, port)`; a SettingError (a ValueError) naming
    `address` for anything else."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingError(
            f"coordinator address must be HOST:PORT (e.g. 10.0.0.1:1234), got {address!r}",
            settings=("address",),
        )
    return host.strip("[]"), int(port)


def is_private(host: str) -> bool:
    """Whether `host` is a loopback or private-network address (or `localhost`): the only
    places the coordinator's unauthenticated gRPC service should listen. A name is
    resolved; one that does not resolve counts as not private."""
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.ip_address(socket.gethostbyname(host))
        except OSError:
            return False
    return address.is_loopback or address.is_private


def wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Waits until a TCP connection to `address` ("HOST:PORT") succeeds, retrying for up to
    `timeout_s` seconds; raises DistributedError naming the address and the time waited."""
    host, port = parse_address(address)
    start = time.monotonic()
    last: OSError | None = None
    while True:
        remaining = timeout_s - (time.monotonic() - start)
        if remaining <= 0:
            break
        try:
            with socket.create_connection((host, port), timeout=min(remaining, 2.0)):
                return
        except OSError as error:
            last = error
            time.sleep(min(0.25, max(remaining, 0)))
    raise DistributedError(
        f"could not reach the coordinator at {address} within {timeout_s:g} s ({last}); "
        "start process 0 (process id 0) there first, and check the host, the port and "
        "any firewall"
    )


def check_processes(coordinator: str, num_processes: int, process_id: int) -> None:
    """Raises a SettingError for a malformed coordinator address, a process count below 1
    or a process id outside [0, num_processes)."""
    with renamed_settings({"address": "coordinator"}):
        parse_address(coordinator)
    if not isinstance(num_processes, int) or num_processes < 1:
        raise SettingError(
            f"num_processes must be a positive int, got {num_processes!r}",
            settings=("num_processes",),
        )
    if not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise SettingError(
            f"process id must be in [0, {num_processes}) for {num_processes} processes, "
            f"got {process_id!r}",
            settings=("process_id",),
        )


def initialize_distributed(
    coordinator: str,
    num_processes: int,
    process_id: int,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> None:
    """Joins this process to a multi-process JAX run (`jax.distributed.initialize`).

    This changes the whole process, by nature: JAX's runtime joins the others, and the
    CPU collectives are switched to gloo in `jax.config` (the one configuration fnn
    changes outside its command line, because joining needs it). Call it in every
    process, before any other JAX computation. Process 0 runs the
    coordinator service at `coordinator` ("HOST:PORT", an address the other processes can
    reach); process `i > 0` first waits up to `timeout_s` seconds for that address to
    accept TCP connections and raises `DistributedError` if it does not. Once connected,
    every process waits up to `timeout_s` for all `num_processes` to register; past that
    JAX's runtime ends the process (SIGABRT, exit status 134, DEADLINE_EXCEEDED in the
    log). On CPU the collectives are gloo (`jax_cpu_collectives_implementation`).

    Raises:
      SettingError (a ValueError): a malformed address, or a process id outside
        [0, num_processes).
      DistributedError: process `i > 0` could not reach the coordinator within `timeout_s`.
    """
    check_processes(coordinator, num_processes, process_id)
    if num_processes > 1 and process_id > 0:
        wait_for_coordinator(coordinator, timeout_s)
    # process-wide by nature: the collectives of every later computation run over gloo
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=max(int(timeout_s), 1),
    )


def is_main_process() -> bool:
    """Whether this is process 0, the one that writes metrics and checkpoints."""
    return jax.process_index() == 0
