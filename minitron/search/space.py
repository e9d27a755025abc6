"""The search space: which sizes each axis may take, derived from the source architecture (torch-free).

Axis syntax (the value of every axis option, --layers, --hidden, ...; the axes: minitron.model.axes):

    4480            one fixed value
    4352,4480,4608  a list
    3072:5120       a range, in steps of the axis step (the table's `step`: --granularity for hidden/FFN,
                    the Mamba groups for Mamba heads, the KV heads for attention heads, ...)
    3072:5120:128   a range with its own step
    source          the source size (nothing pruned on this axis)

Ranges run down from their upper end, so `3000:5120` with step 64 holds 5120, 5056, ... (never 5121).
An axis left unset takes the range from the source size down to `--max-prune` of it (the table's
default, 40% for most width axes; attention heads and layers keep the source size unless asked, as
Nano 2 did).

Depth of a hybrid also respects `--max-prune` per block kind (`mamba-blocks=`, `mlp-blocks=`,
`attention-blocks=`; default 40% of each kind, rounded down): removing 6 of the 12B's 62 blocks may take
at most 2 of its 6 attention blocks (the 9B took 1 Mamba, 3 MLP and 2 attention blocks). A kind loses
its last block only when its share is set to 100% by name: a hybrid never silently becomes a model
without attention (or without Mamba).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from minitron.errors import MinitronError
from minitron.model.arch import BLOCK_NAMES, Architecture
from minitron.model.axes import axes, axis_names, depth_axis
from minitron.model.axes import axis as axis_of

# Depth per block kind: the --max-prune key of each kind (`attention_blocks` for `*`, ...), read from the
# one table of block names, and the share of each kind a hybrid may lose unless told otherwise.
BLOCK_KIND_KEYS = {f"{name}_blocks": kind for kind, name in BLOCK_NAMES.items()}
DEFAULT_BLOCK_MAX_PRUNE = 0.4

_RANGE = re.compile(r"^(\d+):(\d+)(?::(\d+))?$")


def parse_axis(text: str, axis: str, source: Architecture, granularity: int) -> tuple[int, ...]:
    """The values of one axis, largest first; one error line naming the flag when the text is bad."""
    spec = axis_of(axis)
    flag, top = spec.flag, spec.source_size(source)
    raw = str(text).strip().replace(" ", "")
    if raw == "source":
        return (top,)
    match = _RANGE.match(raw)
    if match:
        lo, hi = int(match[1]), int(match[2])
        step = int(match[3]) if match[3] else spec.step_of(source, granularity)
        if step < 1 or lo > hi:
            raise MinitronError(f"{flag}: range {raw!r} needs LO <= HI and a positive step")
        values = tuple(range(hi, lo - 1, -step))
    elif re.fullmatch(r"\d+(,\d+)*,?", raw):
        values = tuple(sorted({int(v) for v in raw.split(",") if v}, reverse=True))
    else:
        raise MinitronError(
            f"{flag}: cannot read {text!r}; write a value (4480), a list (4352,4480), "
            "a range LO:HI or LO:HI:STEP (3072:5120:64), or 'source'"
        )
    if not values or values[-1] < 1:
        raise MinitronError(f"{flag}: sizes must be positive, got {text!r}")
    if values[0] > top:
        raise MinitronError(f"{flag}: {values[0]} is above the source size {top}; pruning only shrinks")
    _check_multiples(axis, values, source, flag)
    return values


def _check_multiples(axis: str, values: tuple[int, ...], source: Architecture, flag: str) -> None:
    spec = axis_of(axis)
    unit = spec.unit(source)
    bad = [v for v in values if unit and v % unit]
    if bad:
        raise MinitronError(f"{flag}: {bad[0]} is not a multiple of the {unit} {spec.step_name}")


def default_axis(
    axis: str, source: Architecture, granularity: int, max_prune: float | None
) -> tuple[int, ...]:
    """Source size down to (1 - max_prune) x source in axis steps; only the source size without max_prune."""
    spec = axis_of(axis)
    top = spec.source_size(source)
    if not max_prune:
        return (top,)
    step = spec.step_of(source, granularity)
    floor = math.ceil(top * (1 - max_prune))
    values = tuple(v for v in range(top, floor - 1, -step) if v >= 1)
    unit = spec.unit(source)
    if unit:
        values = tuple(v for v in values if v % unit == 0) or (top,)
    return values


def default_max_prune() -> dict[str, float]:
    """The table's default --max-prune share of each axis that has one."""
    return {a.name: a.max_prune for a in axes() if a.max_prune is not None}


def parse_max_prune(text: str | None) -> dict[str, float]:
    """'40%' (every width axis) or 'hidden=30%,ffn=50%,layers=10%,attention-blocks=50%' -> fractions per
    axis or block kind (block kinds only by name, see the module doc)."""
    from minitron.units import parse_fraction

    out = default_max_prune()
    if text is None:
        return out
    raw = str(text).replace(" ", "")
    if "=" not in raw:
        fraction = parse_fraction(raw, "--max-prune")
        return {axis: fraction for axis in out}
    for part in filter(None, raw.split(",")):
        name, _, value = part.partition("=")
        axis = name.replace("-", "_")
        if axis not in axis_names() and axis not in BLOCK_KIND_KEYS:
            known = [*axis_names(), *(k.replace("_", "-") for k in BLOCK_KIND_KEYS)]
            raise MinitronError(f"--max-prune: unknown axis {name!r}; axes: {', '.join(known)}")
        out[axis] = parse_fraction(value, f"--max-prune {name}", whole=axis in BLOCK_KIND_KEYS)
    return out


@dataclass(frozen=True)
class DepthOption:
    """Which blocks a candidate drops: exact source indices, or only how many of each type."""

    dropped: tuple[int, ...] | None  # source block indices, when known (depth order or --drop-blocks)
    counts: tuple[int, ...]  # blocks dropped per type, in the family's block_kinds order (M, -, * / D)

    @property
    def known(self) -> bool:
        return self.dropped is not None

    def key(self) -> str:
        if self.dropped is not None:
            return "drop:" + ",".join(map(str, self.dropped))
        return "count:" + ",".join(map(str, self.counts))


def _counts_of(source: Architecture, dropped: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(sum(1 for i in dropped if source.pattern[i] == k) for k in source.block_kinds)


def _splits(remove: int, have: list[int]) -> list[tuple[int, ...]]:
    """Every way of removing `remove` blocks with at most have[k] of type k."""
    if not have:
        return [()] if remove == 0 else []
    return [
        (first, *rest)
        for first in range(min(remove, have[0]) + 1)
        for rest in _splits(remove - first, have[1:])
    ]


def depth_caps(source: Architecture, max_prune: dict[str, float] | None) -> tuple[int, ...]:
    """How many blocks of each kind (family block_kinds order) a candidate may drop.

    A kind named in `max_prune` may lose that share (rounded down: 100% lets every block go); an
    unnamed kind of a hybrid at most DEFAULT_BLOCK_MAX_PRUNE. A model of one block kind has no split
    to choose: --layers alone says how many go.
    """
    max_prune = max_prune or {}
    present = [k for k in source.block_kinds if k in source.pattern]
    caps = []
    for kind in source.block_kinds:
        have = source.count(kind)
        share = max_prune.get(f"{BLOCK_NAMES[kind]}_blocks")
        if share is None:
            share = DEFAULT_BLOCK_MAX_PRUNE if len(present) > 1 else 1.0
        caps.append(have if share >= 1 else min(have - 1, math.floor(share * have + 1e-9)))
    return tuple(max(c, 0) for c in caps)


def describe_caps(source: Architecture, caps: tuple[int, ...]) -> str:
    """'at most 11 mamba, 11 mlp, 2 attention blocks' (kinds the source has)."""
    parts = [
        f"{cap} {BLOCK_NAMES[kind]}"
        for kind, cap in zip(source.block_kinds, caps, strict=True)
        if kind in source.pattern
    ]
    return f"at most {', '.join(parts)} blocks dropped"


def depth_options(
    source: Architecture,
    layers: tuple[int, ...],
    order: list[int] | None,
    drop_blocks: tuple[int, ...] | None,
    caps: tuple[int, ...] | None = None,
) -> list[DepthOption]:
    """One option per way of reaching each layer count within `caps` (blocks per kind, see depth_caps).

    With a depth order the least important blocks go (skipping a kind that reached its cap); with
    --drop-blocks exactly those; without either, every split of the removed blocks over the block
    types (which ones go is unknown). Layer counts the caps cannot reach are left out; none reachable
    is one error line naming the --max-prune keys that would allow it.
    """
    n = source.n_blocks
    if drop_blocks is not None:
        bad = sorted(i for i in drop_blocks if not 0 <= i < n)
        if bad:
            raise MinitronError(f"--drop-blocks: indices {bad} out of range 0..{n - 1}")
        if len(set(drop_blocks)) != len(drop_blocks):
            raise MinitronError("--drop-blocks lists a block twice")
        if n - len(drop_blocks) < 1:
            raise MinitronError("--drop-blocks would drop every block")
        dropped = tuple(sorted(drop_blocks))
        return [DepthOption(dropped, _counts_of(source, dropped))]
    kinds = source.block_kinds
    caps = caps if caps is not None else tuple(source.count(k) for k in kinds)
    options = []
    for target in layers:
        remove = n - target
        if order is not None:
            dropped = _least_important(source, order, remove, caps)
            if dropped is not None:
                options.append(DepthOption(dropped, _counts_of(source, dropped)))
            continue
        options.extend(DepthOption(None, counts) for counts in _splits(remove, list(caps)))
    if not options:
        keys = ", ".join(f"{BLOCK_NAMES[k]}-blocks=" for k in kinds if k in source.pattern)
        raise MinitronError(
            f"--layers {min(layers)}..{max(layers)}: removing {n - max(layers)} or more of {n} blocks needs more "
            f"than --max-prune allows per block kind ({describe_caps(source, caps)}); "
            f"raise it by name, e.g. --max-prune {keys.split(', ')[-1]}50% (keys: {keys})"
        )
    return options


def _least_important(
    source: Architecture, order: list[int], remove: int, caps: tuple[int, ...]
) -> tuple[int, ...] | None:
    """The first `remove` blocks of the depth order whose kind is still under its cap (None: too few)."""
    left = dict(zip(source.block_kinds, caps, strict=True))
    dropped = []
    for i in order:
        if len(dropped) == remove:
            break
        kind = source.pattern[i]
        if left[kind] > 0:
            left[kind] -= 1
            dropped.append(i)
    return tuple(sorted(dropped)) if len(dropped) == remove else None


def representative_pattern(source: Architecture, option: DepthOption) -> str:
    """The block pattern of a depth option; with counts only, the LAST blocks of each type are assumed
    dropped (any choice has the same parameters and memory)."""
    if option.dropped is not None:
        drop = set(option.dropped)
    else:
        drop = set()
        for kind, count in zip(source.block_kinds, option.counts, strict=True):
            if count:
                drop.update(source.block_indices(kind)[-count:])
    return "".join(c for i, c in enumerate(source.pattern) if i not in drop)


@dataclass(frozen=True)
class SearchSpace:
    """Per-axis values (largest first) and the depth options of one search; `space.hidden` reads one axis."""

    source: Architecture
    depth: tuple[DepthOption, ...]
    width: dict[str, tuple[int, ...]]  # every width axis of the table, in table order
    depth_assumption: str  # how the dropped blocks were chosen, said in the table

    def __getattr__(self, name: str) -> tuple[int, ...]:
        width = self.__dict__.get("width", {})
        if name in width:
            return width[name]
        raise AttributeError(name)

    @property
    def size(self) -> int:
        """Configurations before the budget (the product of the axes)."""
        return len(self.depth) * math.prod(len(v) for v in self.width.values())

    def describe(self) -> dict[str, Any]:
        layers = sorted({self.source.n_blocks - sum(d.counts) for d in self.depth}, reverse=True)
        return {
            depth_axis().name: layers,
            "depth_options": len(self.depth),
            "depth_assumption": self.depth_assumption,
            **{axis: list(values) for axis, values in self.width.items()},
            "configurations": self.size,
        }

    def pruned_sizes(self, sizes: dict[str, int]) -> dict[str, int | None]:
        """`sizes` with the axes the source does not have (Mamba axes of a dense model, ...) as None:
        what a candidate row and a TargetSpec hold ("keep the source's")."""
        absent = self.source.absent_axes()
        return {axis: None if axis in absent else value for axis, value in sizes.items()}

    def arch(self, depth: DepthOption, **sizes: int) -> Architecture:
        import dataclasses

        pattern = representative_pattern(self.source, depth)
        return dataclasses.replace(self.source, pattern=pattern, **sizes)


def build_space(
    source: Architecture,
    axes: dict[str, str | None],
    granularity: int = 64,
    max_prune: dict[str, float] | None = None,
    depth_order: list[int] | None = None,
    drop_blocks: tuple[int, ...] | None = None,
) -> SearchSpace:
    """The space of `axes` (flag text per axis, None = default) over `source`."""
    if granularity < 1:
        raise MinitronError(f"--granularity must be a positive integer, got {granularity}")
    unknown = set(axes) - set(axis_names())
    if unknown:
        raise MinitronError(f"unknown axis {sorted(unknown)[0]!r}; axes: {', '.join(axis_names())}")
    max_prune = default_max_prune() if max_prune is None else max_prune
    # An axis whose blocks are absent (no MLP, no attention, no Mamba) has one meaningless size.
    absent = source.absent_axes()
    values: dict[str, tuple[int, ...]] = {}
    for axis in axis_names():
        text = axes.get(axis)
        if axis in absent:
            if text is not None:
                raise MinitronError(f"{axis_of(axis).flag}: {source.family.name} models have no such axis")
            values[axis] = (getattr(source, axis),)
        elif text is not None:
            values[axis] = parse_axis(text, axis, source, granularity)
        else:
            values[axis] = default_axis(axis, source, granularity, max_prune.get(axis))
    layers = values.pop(depth_axis().name)
    if drop_blocks is not None and axes.get(depth_axis().name) is not None:
        raise MinitronError(f"give either {depth_axis().flag} or --drop-blocks, not both")
    caps = depth_caps(source, max_prune)
    depth = depth_options(source, layers, depth_order, drop_blocks, caps)
    capped = any(c < source.count(k) for k, c in zip(source.block_kinds, caps, strict=True))
    limits = f"; {describe_caps(source, caps)} (--max-prune KIND-blocks=)" if capped else ""
    if drop_blocks is not None:
        assumption = "--drop-blocks"
    elif depth_order is not None or layers == (source.n_blocks,):
        assumption = "depth order of the scores file" if layers != (source.n_blocks,) else "no blocks dropped"
    else:
        kinds = [BLOCK_NAMES[k] for k in source.block_kinds if k in source.pattern]
        which = (
            f"every split of the removed blocks over {'/'.join(kinds)} blocks"
            if len(kinds) > 1
            else f"the last {kinds[0]}s assumed removed"
        )
        assumption = f"no depth order: {which} (which ones is left to `minitron score`)"
    if layers != (source.n_blocks,) and drop_blocks is None:
        assumption += limits
    return SearchSpace(source=source, depth=tuple(depth), width=values, depth_assumption=assumption)
