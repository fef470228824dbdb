"""Checkpoints (orbax): a pytree stored by tree path, with the algorithm's name and the layout beside it.

A state is saved as a flat dict ``{"learner.policy_params.params.Dense_0.kernel": array, ...}`` (typed PRNG
keys as their raw ``uint32`` data; zero-size leaves, which orbax refuses, left out and rebuilt from the
template) plus JSON metadata: the algorithm name and every leaf's path, shape and dtype. Restoring checks
both against the template, so a checkpoint of another algorithm or of a changed state layout fails with a
message that names the difference instead of loading wrong weights.

Multi-process runs (:mod:`svnr_jax.distributed`) save and restore globally sharded states the same way, every
process calling :func:`save`/:func:`restore` (orbax writes each process's shards); such a checkpoint restores in
one process too (``svnr eval``), resharded to the template.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = 2


def is_key(x) -> bool:
    """Whether ``x`` (an array or a shape/dtype struct) holds typed PRNG keys."""
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _path_name(path) -> str:
    parts = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            parts.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            parts.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            parts.append(str(k.idx))
        else:  # FlattenedIndexKey and others
            parts.append(str(getattr(k, "key", k)))
    return ".".join(parts) or "root"


def _leaves(tree) -> list[tuple[str, Any]]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    out = [(_path_name(p), x) for p, x in leaves]
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError("checkpoint: two leaves of the state share a path name")
    return out


def to_saveable(tree, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A pytree → ``{path: array}`` (keys as raw data; zero-size leaves and paths starting with a ``skip``
    prefix left out)."""
    return {n: (jax.random.key_data(x) if is_key(x) else x) for n, x in _leaves(tree)
            if getattr(x, "size", 1) > 0 and not n.startswith(skip)}


def checksum(saved: dict[str, Any]) -> str:
    """BLAKE2b of the arrays of :func:`to_saveable`'s dict (paths, shapes, dtypes and bytes, in path order): the
    full arrays, also when each process holds only its shards (then every process must call it)."""
    from svnr_jax.distributed import gather

    h = hashlib.blake2b(digest_size=16)
    for name in sorted(saved):  # leaf by leaf: a globally sharded leaf is gathered alone (a collective)
        x = np.ascontiguousarray(np.asarray(gather(saved[name])))
        h.update(f"{name}|{x.shape}|{x.dtype}|".encode())
        h.update(x.tobytes())
    return h.hexdigest()


def layout(tree) -> dict[str, list]:
    """``{path: [shape, dtype]}`` of every leaf (keys as ``key<impl>``)."""
    return {n: [list(x.shape), "key" if is_key(x) else str(x.dtype)] for n, x in _leaves(tree)}


def from_saveable(saved: dict[str, Any], template, skip: tuple[str, ...] = ()):
    """Inverse of :func:`to_saveable`, with ``template``'s structure, key leaves, zero-size leaves and the leaves
    under the ``skip`` prefixes (taken from ``template`` as they are)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for p, t in leaves:
        name = _path_name(p)
        x = saved.get(name)
        if name.startswith(skip) and getattr(t, "size", 1) > 0:
            out.append(t)
        elif x is None:  # a zero-size leaf
            out.append(jnp.zeros(t.shape, t.dtype))
        else:
            out.append(jax.random.wrap_key_data(x) if is_key(t) else x)
    return jax.tree.unflatten(treedef, out)


def manager(run_dir: str, max_to_keep: int = 2):
    """The orbax ``CheckpointManager`` of ``run_dir/checkpoints`` (steps = chunks done)."""
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(os.path.abspath(os.path.join(run_dir, "checkpoints")),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def save(mgr, step: int, state, *, algo: str, meta: dict | None = None, skip: tuple[str, ...] = ()) -> None:
    """Save ``state`` at ``step`` with its metadata (algorithm, layout, checksum, the ``skip`` prefixes left out,
    and ``meta``, e.g. the run's config; blocking). Several processes: every process calls it with the same
    global state, each writes its own shards (orbax), process 0 the metadata; the folder must be shared."""
    import orbax.checkpoint as ocp

    saveable = to_saveable(state, skip)
    on_host = jax.device_get(saveable) if jax.process_count() == 1 else saveable
    meta = {**(meta or {}), "format": FORMAT, "algo": algo, "layout": layout(state), "skip": list(skip),
            "checksum": checksum(on_host)}
    mgr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(saveable), meta=ocp.args.JsonSave(meta)))
    mgr.wait_until_finished()


class OldFormatCheckpoint(ValueError):
    """A checkpoint written before states were stored by path (no metadata)."""


def read_meta(mgr, step: int) -> dict:
    """The metadata of checkpoint ``step`` (``ValueError`` if it has none: an older format)."""
    import orbax.checkpoint as ocp

    path = os.path.join(str(mgr.directory), str(step))
    if not os.path.isdir(os.path.join(path, "meta")):
        raise OldFormatCheckpoint(f"checkpoint {path} has no metadata: it was written by an older svnr-jax (state "
                                  "stored by leaf index) and cannot be restored by path; retrain or use that version")
    return mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def check_compatible(meta: dict, template, *, algo: str, where: str = "checkpoint") -> None:
    """``ValueError`` naming the difference unless ``meta`` (algorithm, layout) matches ``template``."""
    if meta.get("algo") != algo:
        raise ValueError(f"{where} was written by algorithm {meta.get('algo')!r}, this run is {algo!r}")
    saved, want = meta.get("layout", {}), layout(template)
    missing, extra = sorted(set(want) - set(saved)), sorted(set(saved) - set(want))
    changed = sorted(k for k in set(want) & set(saved) if list(saved[k]) != list(want[k]))
    if missing or extra or changed:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:5]}{' ...' if len(extra) > 5 else ''}")
        if changed:
            k = changed[0]
            parts.append(f"{len(changed)} leaves of another shape/dtype, e.g. {k}: saved {saved[k]}, "
                         f"expected {want[k]}")
        raise ValueError(f"{where} does not match this run's state layout (the state layout changed?): "
                         + "; ".join(parts))


class CorruptCheckpoint(ValueError):
    """A checkpoint whose bytes do not match its checksum, or that cannot be read (truncated, incomplete)."""


def restore_step(mgr, template, *, algo: str, step: int) -> Any:
    """Restore checkpoint ``step`` with ``template``'s structure and sharding, verifying algorithm, layout and
    checksum.

    Raises:
      ValueError: another algorithm or state layout. CorruptCheckpoint: unreadable or wrong checksum.
    """
    import orbax.checkpoint as ocp

    where = f"checkpoint {os.path.join(str(mgr.directory), str(step))}"
    try:
        meta = read_meta(mgr, step)
    except OldFormatCheckpoint:
        raise
    except Exception as e:  # orbax/tensorstore errors of a truncated or incomplete checkpoint
        raise CorruptCheckpoint(f"{where} cannot be read ({type(e).__name__})") from e
    check_compatible(meta, template, algo=algo, where=where)
    skip = tuple(meta.get("skip", ()))
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, to_saveable(template, skip))
    try:
        raw = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
    except Exception as e:
        raise CorruptCheckpoint(f"{where} cannot be read ({type(e).__name__})") from e
    if "checksum" in meta and checksum(raw) != meta["checksum"]:
        raise CorruptCheckpoint(f"{where} does not match its checksum (its files were changed)")
    return from_saveable(raw, template, skip)


def restore(mgr, template, *, algo: str, step: int | None = None, warn=None) -> tuple[Any, int]:
    """Restore the latest valid (or a given) checkpoint with ``template``'s structure and sharding.

    A latest checkpoint that is unreadable or fails its checksum is skipped for the previous one, with a
    warning (``warn(message)``, default: a line on stderr) naming what was skipped. A given ``step`` is not
    replaced.

    Raises:
      FileNotFoundError: no (valid) checkpoint. ValueError: another algorithm or state layout.
    """
    if step is not None:
        return restore_step(mgr, template, algo=algo, step=step), step
    steps = sorted(mgr.all_steps(), reverse=True)
    if not steps:
        raise FileNotFoundError(f"no checkpoint to restore in {mgr.directory}")
    warn = warn or (lambda m: print(m, file=sys.stderr, flush=True))
    skipped = []
    for s in steps:
        try:
            state = restore_step(mgr, template, algo=algo, step=s)
        except CorruptCheckpoint as e:
            skipped.append(str(e))
            continue
        if skipped:
            warn("warning: skipped " + "; ".join(skipped) + f"; restored checkpoint {s} instead")
        return state, s
    raise FileNotFoundError("no valid checkpoint: " + "; ".join(skipped))


def size_bytes(state, skip: tuple[str, ...] = ()) -> int:
    """Bytes of the arrays a checkpoint of ``state`` stores (leaves under the ``skip`` prefixes left out)."""
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(to_saveable(state, skip))))


__all__ = ["CorruptCheckpoint", "check_compatible", "checksum", "from_saveable", "layout", "manager", "read_meta",
           "is_key", "restore", "restore_step", "save", "size_bytes", "to_saveable"]
