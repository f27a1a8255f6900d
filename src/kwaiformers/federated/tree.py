"""The E-Tree aggregation tree as data (Yang et al., IEEE IoT-J 2021, Fig. 2 and the 100-node topology).

A :class:`TreeSpec` has ``levels``: ``levels[0]`` are the clusters of devices (the level-2
aggregators of the paper), ``levels[-1]`` is normally the single root. Every group lists the
*devices* under it (so a level-``l`` group is the union of some level-``l-1`` groups), the device
that **hosts** its aggregation (a member: aggregation points are ordinary devices, there is no
server) and its ``period``: how many aggregations of the level below (steps of the leaves for
level 0) happen per aggregation of this group. When all groups of one level share a period,
level ``l`` fires at step ``s`` when ``s % (k_0 * ... * k_l) == 0`` (the EdgeTB ``round % sync``
rule).

Per-node periods (EdgeTB gives every node its own ``sync``): groups of one level may have
different periods. Group ``g`` then aggregates every ``S_g`` leaf steps (:attr:`TreeSpec.step_periods`)
with ``S_g = period_g`` on level 0 and ``S_g = period_g * lcm(S_c for c in children(g))`` above
(a parent waits for every child, as EdgeTB's aggregators do: when it fires, each child has just
completed a whole number of its own rounds). With equal periods per level this is the rule above.
Every public node's groups must share one step period.

Public nodes (Algorithm 2) may belong to several groups of a level; every other device belongs to
exactly one group per level. ``placement`` maps each device onto ``(rank, slot)``: several
*virtual devices* can live in one process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Group", "TreeSpec", "block_placement"]


@dataclass(frozen=True)
class Group:
    """One aggregation unit: ``members`` (device ids), the ``host`` device, the ``period``."""

    members: tuple[int, ...]
    host: int
    period: int = 1

    def __post_init__(self) -> None:
        members = tuple(int(m) for m in self.members)
        object.__setattr__(self, "members", members)
        if not members:
            raise ValueError("Group.members must be a non-empty sequence of device ids")
        if len(set(members)) != len(members):
            raise ValueError(f"Group.members has duplicates: {members}")
        if int(self.host) not in members:
            raise ValueError(f"Group.host ({self.host}) must be one of its members {members}")
        if not isinstance(self.period, int) or isinstance(self.period, bool) or self.period < 1:
            raise ValueError(f"Group.period must be an integer >= 1, got {self.period!r}")


def _per_group(value: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    out = tuple(value)
    if len(out) != n:
        raise ValueError(f"{name} must be an int or one int per cluster ({n}), got {len(out)}")
    return out


def block_placement(num_devices: int, world_size: int) -> tuple[tuple[int, int], ...]:
    """Contiguous placement of ``num_devices`` virtual devices on ``world_size`` ranks.

    Device ``d`` goes to ``(rank, slot)``; ranks get ``ceil``/``floor`` shares, in order.
    """
    if num_devices < 1 or world_size < 1:
        raise ValueError("num_devices and world_size must be >= 1")
    if world_size > num_devices:
        raise ValueError(
            f"world_size ({world_size}) > num_devices ({num_devices}): a rank would hold no device"
        )
    base, extra = divmod(num_devices, world_size)
    out: list[tuple[int, int]] = []
    for rank in range(world_size):
        for slot in range(base + (1 if rank < extra else 0)):
            out.append((rank, slot))
    return tuple(out)


@dataclass(frozen=True)
class TreeSpec:
    """Validated aggregation tree. Build with :meth:`from_clusters`, :meth:`fedavg`, :meth:`grouped`.

    Args:
        num_devices: leaves ``0..num_devices-1``.
        levels: groups per level, bottom-up.
        public_nodes: devices allowed in several groups of a level (Algorithm 2).
        rooted: whether the last level must be one group over every device (``False`` only for
            the "Grouped" ablation, E-Tree without its root).
        placement: optional ``(rank, slot)`` per device; ``None`` means :func:`block_placement`.
    """

    num_devices: int
    levels: tuple[tuple[Group, ...], ...]
    public_nodes: tuple[int, ...] = ()
    rooted: bool = True
    placement: tuple[tuple[int, int], ...] | None = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "levels", tuple(tuple(level) for level in self.levels)
        )
        object.__setattr__(self, "public_nodes", tuple(sorted(int(p) for p in self.public_nodes)))
        if self.placement is not None:
            object.__setattr__(
                self, "placement", tuple((int(r), int(s)) for r, s in self.placement)
            )
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` unless the tree is well formed (see the module docstring)."""
        n = self.num_devices
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"TreeSpec.num_devices must be a positive int, got {n!r}")
        if not self.levels:
            raise ValueError("TreeSpec.levels must hold at least one level of groups")
        public = set(self.public_nodes)
        if any(p < 0 or p >= n for p in public):
            raise ValueError(f"TreeSpec.public_nodes must be device ids in [0, {n})")
        for li, level in enumerate(self.levels):
            if not level:
                raise ValueError(f"TreeSpec.levels[{li}] is empty")
            if any(not isinstance(g, Group) for g in level):
                raise TypeError(f"TreeSpec.levels[{li}] must contain Group objects")
            seen: dict[int, int] = {}
            for gi, g in enumerate(level):
                for m in g.members:
                    if m < 0 or m >= n:
                        raise ValueError(f"levels[{li}][{gi}] member {m} outside [0, {n})")
                    if m in seen and m not in public:
                        raise ValueError(
                            f"device {m} is in groups {seen[m]} and {gi} of level {li}; only "
                            "public nodes may belong to several groups"
                        )
                    seen[m] = gi
                if not set(g.members) - public:
                    raise ValueError(f"levels[{li}][{gi}] has only public nodes")
            missing = sorted(set(range(n)) - set(seen))
            if missing:
                raise ValueError(f"devices {missing[:10]} are in no group of level {li}")
            if li > 0:
                self.children(li)  # checks nesting
        if public and not self.uniform_periods:
            steps = self.step_periods
            for li, level in enumerate(self.levels):
                for p in public:
                    got = {steps[li][gi] for gi, g in enumerate(level) if p in g.members}
                    if len(got) > 1:
                        raise ValueError(
                            f"public node {p} is in groups of level {li} with different step "
                            f"periods {sorted(got)}; a public node's groups must share one period"
                        )
        if self.rooted and len(self.levels[-1]) != 1:
            raise ValueError(
                f"a rooted TreeSpec needs exactly one root group, the last level has "
                f"{len(self.levels[-1])} (use rooted=False for the Grouped ablation)"
            )
        if self.placement is not None:
            if len(self.placement) != n:
                raise ValueError(f"TreeSpec.placement needs one (rank, slot) per device ({n})")
            if len(set(self.placement)) != n:
                raise ValueError("TreeSpec.placement has duplicate (rank, slot) pairs")
            by_rank: dict[int, list[int]] = {}
            for r, s in self.placement:
                if r < 0 or s < 0:
                    raise ValueError("TreeSpec.placement ranks and slots must be >= 0")
                by_rank.setdefault(r, []).append(s)
            for r, slots in by_rank.items():
                if sorted(slots) != list(range(len(slots))):
                    raise ValueError(f"rank {r}'s slots must be 0..{len(slots) - 1}")
            if sorted(by_rank) != list(range(len(by_rank))):
                raise ValueError("TreeSpec.placement ranks must be 0..world_size-1 without gaps")

    def children(self, level: int) -> tuple[tuple[int, ...], ...]:
        """For each group of ``levels[level]`` (``level >= 1``), the indices of its child groups."""
        if level < 1 or level >= len(self.levels):
            raise ValueError(f"children() needs 1 <= level < {len(self.levels)}, got {level}")
        public = set(self.public_nodes)
        parents = self.levels[level]
        owner: dict[int, int] = {}
        for pi, g in enumerate(parents):
            for m in g.members:
                if m not in public:
                    owner[m] = pi
        out: list[list[int]] = [[] for _ in parents]
        for ci, c in enumerate(self.levels[level - 1]):
            owners = {owner[m] for m in c.members if m not in public}
            if len(owners) != 1:
                raise ValueError(
                    f"levels[{level - 1}][{ci}] is split across groups {sorted(owners)} of level "
                    f"{level}: a group must be a union of whole groups of the level below"
                )
            out[owners.pop()].append(ci)
        for pi, (g, kids) in enumerate(zip(parents, out)):
            covered = set().union(*(self.levels[level - 1][k].members for k in kids)) - public
            if covered != set(g.members) - public:
                raise ValueError(
                    f"levels[{level}][{pi}] members differ from the union of its children"
                )
        return tuple(tuple(k) for k in out)

    # ------------------------------------------------------------------ helpers
    @property
    def uniform_periods(self) -> bool:
        """Whether all groups of every level share one period (no per-node periods)."""
        return all(len({g.period for g in level}) == 1 for level in self.levels)

    @property
    def periods(self) -> tuple[int, ...]:
        """``k_l`` per level (trees with per-node periods: use :attr:`step_periods`)."""
        if not self.uniform_periods:
            raise ValueError("this TreeSpec has per-node periods: use step_periods")
        return tuple(level[0].period for level in self.levels)

    @property
    def cumulative_periods(self) -> tuple[int, ...]:
        """``k_0 * ... * k_l`` per level: level ``l`` fires at steps divisible by this."""
        out, acc = [], 1
        for k in self.periods:  # raises for per-node periods
            acc *= k
            out.append(acc)
        return tuple(out)

    @property
    def step_periods(self) -> tuple[tuple[int, ...], ...]:
        """Leaf steps between two aggregations of each group, per level (module docstring)."""
        out: list[tuple[int, ...]] = [tuple(g.period for g in self.levels[0])]
        for li in range(1, len(self.levels)):
            kids = self.children(li)
            out.append(tuple(
                g.period * math.lcm(*(out[li - 1][k] for k in kids[gi]))
                for gi, g in enumerate(self.levels[li])))
        return tuple(out)

    def groups_to_fire(self, step: int) -> tuple[tuple[int, ...], ...]:
        """Indices of the groups of every level that aggregate at leaf step ``step``.

        A firing group's descendants always fire too (their step periods divide its own).
        """
        return tuple(tuple(gi for gi, p in enumerate(level) if step % p == 0)
                     for level in self.step_periods)

    def level_to_fire(self, step: int) -> int:
        """Highest level with a group that fires at ``step`` (``-1``: none, local step)."""
        top = -1
        for li, fired in enumerate(self.groups_to_fire(step)):
            if fired:
                top = li
        return top

    def placement_for(self, world_size: int) -> tuple[tuple[int, int], ...]:
        """The placement, or the block placement for ``world_size`` when none is stored."""
        if self.placement is None:
            return block_placement(self.num_devices, world_size)
        ranks = 1 + max(r for r, _ in self.placement)
        if ranks != world_size:
            raise ValueError(
                f"TreeSpec.placement uses {ranks} ranks but the run has world_size={world_size}"
            )
        return self.placement

    def with_placement(self, placement: Sequence[tuple[int, int]] | None) -> TreeSpec:
        return TreeSpec(self.num_devices, self.levels, self.public_nodes, self.rooted,
                        None if placement is None else tuple(placement))

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_clusters(
        cls,
        clusters: Sequence[Sequence[int]],
        centers: Sequence[int],
        root: int | None = None,
        k1: int | Sequence[int] = 1,
        k2: int = 4,
        public_nodes: Sequence[int] = (),
        num_devices: int | None = None,
    ) -> TreeSpec:
        """The paper's 3-layer E-Tree: KMA clusters hosted on their centres, root on a centre.

        ``k1``: leaf steps per cluster round, one int or one per cluster (per-node periods: the
        root then aggregates every ``k2 * lcm(k1)`` steps); ``k2``: cluster rounds per root
        round. ``root`` defaults to the centre of the largest cluster.
        """
        if len(clusters) != len(centers):
            raise ValueError("from_clusters: clusters and centers must have the same length")
        k1s = _per_group(k1, len(clusters), "k1")
        n = num_devices if num_devices is not None else 1 + max(max(c) for c in clusters)
        groups = tuple(Group(tuple(c), int(h), k) for c, h, k in zip(clusters, centers, k1s))
        if root is None:
            root = int(centers[max(range(len(clusters)), key=lambda i: len(clusters[i]))])
        if root not in set(int(c) for c in centers):
            raise ValueError(f"from_clusters: root ({root}) must be one of the centers {centers}")
        return cls(n, (groups, (Group(tuple(range(n)), int(root), k2),)), tuple(public_nodes))

    @classmethod
    def fedavg(cls, num_devices: int, period: int = 1, host: int = 0) -> TreeSpec:
        """FedAvg as a one-level tree: every device in one group hosted on ``host``."""
        return cls(num_devices, ((Group(tuple(range(num_devices)), host, period),),))

    @classmethod
    def grouped(
        cls,
        clusters: Sequence[Sequence[int]],
        centers: Sequence[int],
        period: int | Sequence[int] = 1,
        public_nodes: Sequence[int] = (),
        num_devices: int | None = None,
    ) -> TreeSpec:
        """The "Grouped" ablation (paper Table 3): E-Tree without the root level."""
        periods = _per_group(period, len(clusters), "period")
        n = num_devices if num_devices is not None else 1 + max(max(c) for c in clusters)
        groups = tuple(Group(tuple(c), int(h), k) for c, h, k in zip(clusters, centers, periods))
        return cls(n, (groups,), tuple(public_nodes), rooted=False)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "num_devices": self.num_devices,
            "rooted": self.rooted,
            "public_nodes": list(self.public_nodes),
            "levels": [
                [{"members": list(g.members), "host": g.host, "period": g.period} for g in lvl]
                for lvl in self.levels
            ],
            "placement": None if self.placement is None else [list(p) for p in self.placement],
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TreeSpec:
        if not isinstance(data, dict):
            raise TypeError(f"TreeSpec.from_dict needs a dict, got {type(data).__name__}")
        unknown = set(data) - {"num_devices", "rooted", "public_nodes", "levels", "placement"}
        if unknown:
            raise ValueError(f"TreeSpec JSON has unknown keys {sorted(unknown)}")
        try:
            levels = tuple(
                tuple(Group(tuple(g["members"]), int(g["host"]), int(g.get("period", 1)))
                      for g in lvl)
                for lvl in data["levels"]
            )
            return cls(
                int(data["num_devices"]),
                levels,
                tuple(data.get("public_nodes", ())),
                bool(data.get("rooted", True)),
                None if data.get("placement") is None else tuple(map(tuple, data["placement"])),
            )
        except KeyError as e:
            raise ValueError(f"TreeSpec JSON is missing the field {e}") from None

    @classmethod
    def from_json(cls, text: str) -> TreeSpec:
        return cls.from_dict(json.loads(text))
