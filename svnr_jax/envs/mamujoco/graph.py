"""Agent graphs of the MaMuJoCo tasks and the index tables derived from them (numpy, construction time).

The model follows Gymnasium-Robotics ``mamujoco_v1`` (its ``obsk.py``): every actuated joint is a graph
node, joints that are kinematically coupled share a hyperedge, an agent owns a tuple of nodes (its
partition), and an agent observes

1. for every graph distance ``d = 0 .. k`` (breadth-first from its own nodes over the hyperedges; the
   nodes first reached at distance ``d``, sorted by label), every node's entries of the observation
   categories of depth ``d`` (node-major, category-minor); body categories (``cinert``, ``cvel``,
   ``cfrc_ext``) add each body only once per agent;
2. then, category-major, the global nodes' entries of the global categories (body dedup restarts here).

Here nodes name MJCF joints, bodies and tendons; :func:`resolve` turns every entry into an index into the
flat feature vector built at step time (see :class:`FeatureLayout`), so that the jitted step builds all
observations with one gather. Nothing here is traced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import mujoco
import numpy as np

#: Categories whose entries are per-body rows (``data.<category>[body]``).
BODY_CATEGORIES = ("cinert", "cvel", "cfrc_ext")
#: Width of one body row per body category.
BODY_WIDTH = {"cinert": 10, "cvel": 6, "cfrc_ext": 6}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One scalar observation entry: ``source[index of ref]``.

    ``source`` is a feature source (``qpos``, ``qvel``, ``qvel_clip10``, ``qfrc_actuator``, ``cinert``,
    ``cvel``, ``cfrc_ext``, ``cfrc_ext_clip1``, ``ten_J``, ``ten_length``, ``ten_velocity``; a ``_clipC``
    suffix means the source clipped to ``[-C, C]``). ``ref`` locates the entry in it:

    * joint sources (qpos*, qvel*, qfrc_actuator*): ``(joint_name, offset)`` → joint address + offset,
      or ``(int,)`` → that raw index;
    * body sources: ``(body, component)``, ``body`` a body name or ``"joint:<name>"`` (the body that
      carries that joint, for unnamed bodies);
    * ``ten_J``: ``(tendon_name, joint_name)`` → the tendon row's column of that joint's first dof;
    * ``ten_length`` / ``ten_velocity``: ``(tendon_name,)``.
    """

    source: str
    ref: tuple


@dataclasses.dataclass(frozen=True)
class Node:
    """A graph node (an actuated joint, or a global node).

    Attributes:
      label: the name nodes are sorted by within one graph distance (Gymnasium-Robotics' label).
      joint: MJCF joint name (``None`` for global nodes without a single joint).
      bodies: bodies whose rows the body categories add (names or ``"joint:<name>"``).
      body_clip: clip body rows to ``[-body_clip, body_clip]`` (Ant's ``clip(x, -1, 1)``).
      overrides: category → explicit entries, replacing the default entries of that category
        (an empty tuple disables the category for this node).
    """

    label: str
    joint: str | None = None
    bodies: tuple[str, ...] = ()
    body_clip: float | None = None
    overrides: Mapping[str, tuple[Entry, ...]] = dataclasses.field(default_factory=dict)

    def entries(self, category: str, seen_bodies: dict[str, set[str]]) -> list[Entry]:
        """The entries this node contributes for ``category`` (body rows already in ``seen_bodies``
        are skipped and new ones recorded)."""
        if category in self.overrides:
            return list(self.overrides[category])
        if category in ("qpos", "qvel", "qfrc_actuator"):
            if self.joint is None:
                return []
            return [Entry(category, (self.joint, 0))]
        if category in BODY_CATEGORIES:
            out = []
            seen = seen_bodies.setdefault(category, set())
            source = category if self.body_clip is None else f"{category}_clip{self.body_clip:g}"
            for body in self.bodies:
                if body in seen:
                    continue
                seen.add(body)
                out += [Entry(source, (body, c)) for c in range(BODY_WIDTH[category])]
            return out
        return []  # a category this node does not have (e.g. ten_J on a node without a tendon)


@dataclasses.dataclass(frozen=True)
class AgentGraph:
    """Nodes, hyperedges, partition and global nodes of one task.

    Attributes:
      partition: per agent, its nodes in action order (agent action ``i`` drives ``partition[a][i]``).
      hyperedges: sets of labels that are mutually adjacent.
      global_nodes: nodes every agent observes with the global categories.
      local_categories: categories per graph distance (the last repeats for larger distances).
      global_categories: categories of the global nodes.
    """

    partition: tuple[tuple[Node, ...], ...]
    hyperedges: tuple[frozenset[str], ...]
    global_nodes: tuple[Node, ...]
    local_categories: tuple[tuple[str, ...], ...]
    global_categories: tuple[str, ...] = ("qpos", "qvel")

    def __post_init__(self):
        labels = [n.label for part in self.partition for n in part]
        if len(labels) != len(set(labels)):
            raise ValueError(f"a node belongs to more than one agent: {labels}")
        unknown = set().union(*self.hyperedges) - set(labels) if self.hyperedges else set()
        if unknown:
            raise ValueError(f"hyperedges name unknown nodes {sorted(unknown)}")

    @property
    def nodes(self) -> dict[str, Node]:
        return {n.label: n for part in self.partition for n in part}

    def neighbours(self, label: str) -> set[str]:
        """Labels sharing a hyperedge with ``label``."""
        return set().union(*(e for e in self.hyperedges if label in e)) - {label} if self.hyperedges else set()

    def nodes_by_distance(self, agent: int, k: int) -> list[list[Node]]:
        """``[d] -> nodes first reached at graph distance d`` (d = 0..k) from the agent's nodes,
        each list sorted by label (breadth-first search over the hyperedges)."""
        nodes = self.nodes
        frontier = {n.label for n in self.partition[agent]}
        explored = set(frontier)
        levels = [sorted(frontier)]
        for _ in range(k):
            reached = set().union(*(self.neighbours(lab) for lab in frontier)) if frontier else set()
            frontier = reached - explored
            explored |= frontier
            levels.append(sorted(frontier))
        return [[nodes[lab] for lab in level] for level in levels]

    def categories_at(self, depth: int) -> tuple[str, ...]:
        return self.local_categories[min(depth, len(self.local_categories) - 1)]

    def agent_entries(self, agent: int, k: int) -> list[Entry]:
        """All observation entries of ``agent`` at neighbourhood depth ``k``, in observation order."""
        out: list[Entry] = []
        seen: dict[str, set[str]] = {}
        for depth, level in enumerate(self.nodes_by_distance(agent, k)):
            for node in level:
                for category in self.categories_at(depth):
                    out += node.entries(category, seen)
        seen = {}
        for category in self.global_categories:
            for node in self.global_nodes:
                out += node.entries(category, seen)
        return out


def _body_id(model: mujoco.MjModel, body: str) -> int:
    if body.startswith("joint:"):
        return int(model.jnt_bodyid[model.joint(body[len("joint:"):]).id])
    return int(model.body(body).id)


def entry_index(model: mujoco.MjModel, entry: Entry) -> tuple[str, int]:
    """``(base source, flat index into it)`` of an entry (base = source without a ``_clip`` suffix)."""
    base = entry.source.split("_clip")[0]
    ref = entry.ref
    if base in ("qpos",):
        if isinstance(ref[0], int):
            return entry.source, int(ref[0])
        return entry.source, int(model.jnt_qposadr[model.joint(ref[0]).id]) + int(ref[1])
    if base in ("qvel", "qfrc_actuator"):
        if isinstance(ref[0], int):
            return entry.source, int(ref[0])
        return entry.source, int(model.jnt_dofadr[model.joint(ref[0]).id]) + int(ref[1])
    if base in BODY_CATEGORIES:
        return entry.source, _body_id(model, ref[0]) * BODY_WIDTH[base] + int(ref[1])
    if base == "ten_J":
        tendon = model.tendon(ref[0]).id
        return entry.source, tendon * model.nv + int(model.jnt_dofadr[model.joint(ref[1]).id])
    if base in ("ten_length", "ten_velocity"):
        return entry.source, int(model.tendon(ref[0]).id)
    raise ValueError(f"unknown observation source {entry.source!r}")


def source_size(model: mujoco.MjModel, source: str) -> int:
    """Length of the flat feature vector of a source."""
    base = source.split("_clip")[0]
    return {
        "qpos": model.nq,
        "qvel": model.nv,
        "qfrc_actuator": model.nv,
        "cinert": model.nbody * 10,
        "cvel": model.nbody * 6,
        "cfrc_ext": model.nbody * 6,
        "ten_J": model.ntendon * model.nv,
        "ten_length": model.ntendon,
        "ten_velocity": model.ntendon,
    }[base]


@dataclasses.dataclass(frozen=True)
class FeatureLayout:
    """Where each used source sits in the flat feature vector; the last slot is a constant 0 (padding).

    Attributes:
      sources: used sources in layout order.
      offsets: start of each source.
      size: total length including the padding slot.
    """

    sources: tuple[str, ...]
    offsets: tuple[int, ...]
    size: int

    @property
    def pad_index(self) -> int:
        return self.size - 1

    @classmethod
    def build(cls, model: mujoco.MjModel, entry_lists: Sequence[Sequence[Entry]]) -> FeatureLayout:
        used = sorted({e.source for entries in entry_lists for e in entries})
        offsets, pos = [], 0
        for s in used:
            offsets.append(pos)
            pos += source_size(model, s)
        return cls(tuple(used), tuple(offsets), pos + 1)

    def indices(self, model: mujoco.MjModel, entries: Sequence[Entry]) -> np.ndarray:
        """``[len(entries)]`` int32 flat feature indices."""
        out = []
        for e in entries:
            source, idx = entry_index(model, e)
            size = source_size(model, source)
            if not 0 <= idx < size:
                raise ValueError(f"entry {e} resolves to index {idx} outside {source}[{size}]")
            out.append(self.offsets[self.sources.index(source)] + idx)
        return np.asarray(out, dtype=np.int32)

    def table(self, model: mujoco.MjModel, entry_lists: Sequence[Sequence[Entry]], width: int) -> np.ndarray:
        """``[len(entry_lists), width]`` int32 index table, rows padded with :attr:`pad_index`."""
        table = np.full((len(entry_lists), width), self.pad_index, dtype=np.int32)
        for i, entries in enumerate(entry_lists):
            idx = self.indices(model, entries)
            table[i, : len(idx)] = idx
        return table
