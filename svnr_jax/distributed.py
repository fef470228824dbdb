"""Runs over several processes (hosts): ``jax.distributed`` set-up and the few collectives the runner and the sweep
need.

After :func:`initialize`, ``jax.devices()`` lists every process's devices, so the seed mesh of
:func:`svnr_jax.training.seed_sharding` spans all hosts; each process holds the rows (seeds, grid points) of its own
devices. Without :func:`initialize` (one process) every helper here reduces to its single-process meaning
(``gather`` = ``jax.device_get``, ``barrier`` does nothing), so single-process runs are unchanged.

    distributed.initialize()                                   # TPU pod slice, SLURM, Open MPI: auto-detected
    distributed.initialize("10.0.0.1:1234", num_processes=2, process_id=0)   # explicit

Design, launch lines and the shared-folder requirement: ``docs/distributed.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from svnr_jax.checkpoint import is_key


class DistributedError(ValueError):
    """A bad launch: a malformed or incomplete ``--coordinator/--num-processes/--process-id``, or no cluster found."""


def _check_coordinator(coordinator: str) -> None:
    host, sep, port = str(coordinator).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"coordinator {coordinator!r} is not HOST:PORT (e.g. 10.0.0.1:1234, port 1-65535)")


def check_launch(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Validate an explicit launch (all three given) or an auto-detected one (none given).

    Raises:
      DistributedError: naming the missing or bad value.
    """
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    if all(v is None for v in given.values()):
        return
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise DistributedError(f"an explicit multi-process launch needs coordinator, num_processes and process_id; "
                               f"missing {missing} (or give none of them to auto-detect the cluster)")
    _check_coordinator(coordinator)
    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise DistributedError(f"num_processes must be an int >= 1, got {num_processes!r}")
    if isinstance(process_id, bool) or not isinstance(process_id, int) or not 0 <= process_id < num_processes:
        raise DistributedError(f"process_id must be an int in [0, num_processes={num_processes}), got {process_id!r}")


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               local_device_ids: Sequence[int] | None = None, *, timeout_s: int = 300) -> None:
    """Join (or, as process 0, start) a multi-process JAX run; must come before any JAX computation.

    With no arguments JAX detects the cluster (TPU pod slice, SLURM, Open MPI); otherwise all of ``coordinator``
    (``HOST:PORT`` of process 0), ``num_processes`` and ``process_id`` are needed. CPU processes get cross-process
    collectives (gloo). A second call with the same (or no) values does nothing.

    Raises:
      DistributedError: bad or incomplete values, or nothing detected. RuntimeError: already initialised
        differently, or JAX already ran a computation in this process.
    """
    check_launch(coordinator, num_processes, process_id)
    if jax.distributed.is_initialized():
        if (num_processes, process_id) not in ((None, None), (jax.process_count(), jax.process_index())):
            raise RuntimeError(f"jax.distributed is already initialised as process {jax.process_index()} of "
                               f"{jax.process_count()}, not {process_id} of {num_processes}")
        return
    if jax.config.jax_cpu_collectives_implementation is None:  # CPU processes need it for cross-process collectives
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, local_device_ids,
                                   initialization_timeout=timeout_s)
    except ValueError as e:
        if coordinator is None:
            raise DistributedError(f"--distributed found no cluster to join ({e}): no TPU pod slice, SLURM or Open "
                                   "MPI environment was detected; give --coordinator HOST:PORT --num-processes N "
                                   "--process-id K instead") from None
        raise


def process_index() -> int:
    """This process's index (0 without :func:`initialize`)."""
    return jax.process_index()


def process_count() -> int:
    """Number of processes of the run (1 without :func:`initialize`)."""
    return jax.process_count()


def is_primary() -> bool:
    """Whether this is process 0: the one that writes the files every process would otherwise write alike."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (same name on all; nothing with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def is_global(x) -> bool:
    """Whether ``x`` is a ``jax.Array`` with shards on other processes' devices."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable


def gather(tree: Any) -> Any:
    """A pytree of (possibly globally sharded) arrays as host numpy arrays, the full arrays on every process (a
    collective: every process must call it). One process: exactly ``jax.device_get``. Typed PRNG keys come back
    as their raw ``uint32`` data when several processes run."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    def one(x):
        if is_key(x):
            x = jax.random.key_data(x)
        if is_global(x):
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(one, tree)


def to_global(tree: Any, sharding) -> Any:
    """Host values that are the same on every process (numpy, local ``jax.Array`` s, typed keys) → global arrays
    on ``sharding``: each process fills only its own devices' shards. Already global leaves are resharded."""

    def one(x):
        if is_global(x):
            return jax.jit(lambda y: y, out_shardings=sharding)(x)
        if is_key(x):
            data = one(np.asarray(jax.random.key_data(x)))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(one, tree)


def agree_max(value: int) -> int:
    """The largest of each process's ``value`` (a collective; one process: ``value``). Used to agree on stopping:
    a signal that reached one process stops all of them after the same chunk."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.asarray([value], np.int64), tiled=True)))


def local_rows(x) -> dict[int, np.ndarray]:
    """``{row: x[row]}`` for the rows of the leading axis held by this process's devices (a globally sharded
    array's own slice; every row with one process)."""
    if not isinstance(x, jax.Array):
        return dict(enumerate(np.asarray(x)))
    rows: dict[int, np.ndarray] = {}
    for shard in x.addressable_shards:
        start = (shard.index[0] if shard.index else slice(None)).start or 0
        data = np.asarray(shard.data)
        for i in range(data.shape[0]):
            rows.setdefault(start + i, data[i])
    return rows


__all__ = ["DistributedError", "agree_max", "barrier", "check_launch", "gather", "initialize", "is_global",
           "is_primary", "local_rows", "process_count", "process_index", "to_global"]
