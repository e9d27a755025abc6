"""The feasible set of a search space under a memory budget, enumerated analytically (torch-free).

For fixed depth, hidden, Mamba and attention sizes, memory and parameters are affine in the FFN
size (each MLP block holds 2 x hidden x ffn weights; no cache depends on it). So each choice of the
other axes is solved for its largest fitting FFN in closed form: the feasible FFN values are a
prefix of the axis, their count is the combination's share of the feasible set, and the largest is a
point of the frontier (the largest candidates that still fit). The 12B space with --layers 56 and
no depth order (28 block-type splits x 33 hidden x 7 x 5 Mamba sizes, FFN solved) takes well under
a second.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from minitron.errors import MinitronError
from minitron.memory import MemoryEstimate, ServingSpec
from minitron.model.arch import Architecture
from minitron.model.axes import width_axes, width_names
from minitron.search.space import DepthOption, SearchSpace
from minitron.units import DTYPE_BYTES, format_bytes


@dataclass(frozen=True)
class Constraint:
    """What every candidate must satisfy: serving memory within the budget, parameters within bounds."""

    serving: ServingSpec
    min_params: int | None = None
    max_params: int | None = None
    # Parameters one token passes through (MoE models: routed experts beyond the top-k left out).
    min_active_params: int | None = None
    max_active_params: int | None = None

    def __post_init__(self) -> None:
        self.usable_bytes  # noqa: B018  (a constraint without a budget: one error line now)

    @property
    def usable_bytes(self) -> int:
        return self.serving.usable_bytes("search")

    def memory(self, arch: Architecture) -> MemoryEstimate:
        return self.serving.memory(arch)

    def to_dict(self) -> dict:
        """The flat record candidates files and study settings hold (as before the ServingSpec)."""
        s = self.serving
        return {
            "usable_bytes": self.usable_bytes, "context_tokens": s.context_tokens, "batch": s.batch,
            "weight_dtype": s.weight_dtype, "kv_dtype": s.kv_dtype, "ssm_dtype": s.ssm_dtype, "engine": s.engine,
            "min_params": self.min_params, "max_params": self.max_params,
            "min_active_params": self.min_active_params, "max_active_params": self.max_active_params,
        }  # fmt: skip

    def violation(self, arch: Architecture) -> str | None:
        """Why `arch` is not allowed (None when it is), recomputed from its sizes."""
        mem = self.memory(arch)
        if mem.total_bytes > self.usable_bytes:
            return f"needs {format_bytes(mem.total_bytes)} > budget {format_bytes(self.usable_bytes)}"
        if self.max_params is not None and arch.n_params > self.max_params:
            return f"{arch.n_params:,} parameters > --max-params {self.max_params:,}"
        if self.min_params is not None and arch.n_params < self.min_params:
            return f"{arch.n_params:,} parameters < --min-params {self.min_params:,}"
        active = arch.n_active_params
        if self.max_active_params is not None and active > self.max_active_params:
            return f"{active:,} active parameters > --max-active-params {self.max_active_params:,}"
        if self.min_active_params is not None and active < self.min_active_params:
            return f"{active:,} active parameters < --min-active-params {self.min_active_params:,}"
        return None

    @property
    def bounds_params(self) -> bool:
        return any(
            v is not None
            for v in (self.min_params, self.max_params, self.min_active_params, self.max_active_params)
        )


@dataclass(frozen=True, init=False)
class Point:
    """One architecture of the space: a depth option and a size per width axis (table order).

    `Point(depth, 4480, 15680, ...)` or `Point(depth, hidden=4480, ...)`; `point.hidden` reads one size.
    """

    depth: DepthOption
    values: tuple[int, ...]

    def __init__(self, depth: DepthOption, *values: int, **sizes: int) -> None:
        names = width_names()
        if sizes:
            if values or set(sizes) != set(names):
                raise TypeError(f"Point takes one size per width axis: {', '.join(names)}")
            values = tuple(sizes[n] for n in names)
        if len(values) != len(names):
            raise TypeError(f"Point takes one size per width axis: {', '.join(names)}")
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "values", tuple(values))

    def __getattr__(self, name: str) -> int:
        names = width_names()
        if name in names and "values" in self.__dict__:
            return self.values[names.index(name)]
        raise AttributeError(name)

    def sizes(self) -> dict[str, int]:
        return dict(zip(width_names(), self.values, strict=True))

    def key(self) -> str:
        """Identity of the architecture (what 'evaluated twice' means)."""
        return self.depth.key() + "|" + ",".join(f"{k}={v}" for k, v in self.sizes().items())


@dataclass
class Combination:
    """Every axis but the solved (affine) one fixed; `values` holds its feasible sizes, largest first.
    `combo.ffn` reads the solved axis' values, `combo.hidden` a fixed size."""

    depth: DepthOption
    fixed: dict[str, int]
    values: tuple[int, ...]

    def __getattr__(self, name: str):
        if name == solved_axis() and "values" in self.__dict__:
            return self.values
        fixed = self.__dict__.get("fixed", {})
        if name in fixed:
            return fixed[name]
        raise AttributeError(name)

    def point(self, value: int) -> Point:
        return Point(self.depth, **self.fixed, **{solved_axis(): value})


def solved_axis() -> str:
    """The width axis memory and parameters are affine in (FFN: no cache depends on it)."""
    (name,) = [a.name for a in width_axes() if a.affine]
    return name


@dataclass
class Enumeration:
    space: SearchSpace
    constraint: Constraint
    combinations: list[Combination] = field(default_factory=list)
    smallest_bytes: int = 0  # the smallest footprint anywhere in the space
    smallest_params: int = 0

    @property
    def feasible(self) -> int:
        return sum(len(c.values) for c in self.combinations)

    def frontier(self) -> list[Point]:
        """The largest fitting FFN of every combination of the other axes."""
        return [c.point(c.values[0]) for c in self.combinations]

    def sample(self, n: int, seed: int) -> list[Point]:
        """`n` distinct feasible points drawn uniformly (all of them when there are fewer)."""
        rng = random.Random(seed)
        total = self.feasible
        picks = rng.sample(range(total), min(n, total))
        starts, acc = [], 0
        for c in self.combinations:
            starts.append(acc)
            acc += len(c.values)
        out = []
        for p in picks:
            i = bisect.bisect_right(starts, p) - 1
            c = self.combinations[i]
            out.append(c.point(c.values[p - starts[i]]))
        return out

    def contains(self, point: Point) -> bool:
        """`point` is one of the space's configurations and satisfies the constraint."""
        in_space = point.depth in self.space.depth and all(
            getattr(point, axis) in values for axis, values in self.space.width.items()
        )
        return in_space and self.constraint.violation(self.space.arch(point.depth, **point.sizes())) is None


def enumerate_feasible(space: SearchSpace, constraint: Constraint) -> Enumeration:
    """Every feasible point of `space`, grouped by the non-FFN axes; one error line when none fits."""
    import dataclasses

    result = Enumeration(space=space, constraint=constraint)
    solved = solved_axis()
    others = [name for name in space.width if name != solved]
    solved_values = space.width[solved]  # largest first
    ascending = tuple(reversed(solved_values))
    smallest_bytes = smallest_params = None
    wbytes = DTYPE_BYTES[constraint.memory(space.source).weight_dtype]
    for depth in space.depth:
        base_arch = space.arch(depth)
        for sizes in itertools.product(*(space.width[name] for name in others)):
            fixed = dict(zip(others, sizes, strict=True))
            try:
                arch = dataclasses.replace(base_arch, **fixed, **{solved: solved_values[-1]})
            except MinitronError:  # sizes the family's config refuses (Llama: hidden % heads)
                continue
            per_unit_params = arch.family.ffn_unit_params(arch)  # n_params is linear in the solved axis
            mem = constraint.memory(arch)
            if smallest_bytes is None or mem.total_bytes < smallest_bytes:
                smallest_bytes, smallest_params = mem.total_bytes, arch.n_params
            fits = _fitting_ffn(
                ascending,
                mem.total_bytes,
                arch.n_params,
                arch.n_active_params,
                per_unit_params,
                wbytes,
                constraint,
            )
            if fits:
                result.combinations.append(Combination(depth, fixed, fits))
    result.smallest_bytes, result.smallest_params = smallest_bytes or 0, smallest_params or 0
    if not result.combinations:
        limits = f"the budget {format_bytes(constraint.usable_bytes)}"
        if constraint.bounds_params:
            limits += " and the parameter bounds (--min/--max-params, --min/--max-active-params)"
        raise MinitronError(
            f"nothing in the search space fits {limits}: the smallest candidate needs "
            f"{format_bytes(result.smallest_bytes)} ({result.smallest_params:,} parameters); "
            "allow more pruning (--max-prune, wider axis ranges) or raise the budget"
        )
    return result


def _fitting_ffn(
    ascending: tuple[int, ...],
    bytes_at_min: int,
    params_at_min: int,
    active_at_min: int,
    per_ffn_params: int,
    wbytes: int,
    constraint: Constraint,
) -> tuple[int, ...]:
    """FFN values (largest first) whose memory and parameters satisfy the constraint, in closed form.

    MLP neurons are always active, so total and active parameters grow with the same slope."""
    lo = ascending[0]
    if bytes_at_min > constraint.usable_bytes:
        return ()
    high = math.inf
    low = -math.inf
    bounds = (
        (params_at_min, constraint.min_params, constraint.max_params),
        (active_at_min, constraint.min_active_params, constraint.max_active_params),
    )
    if per_ffn_params:
        high = lo + (constraint.usable_bytes - bytes_at_min) // (per_ffn_params * wbytes)
        for at_min, least, most in bounds:
            if most is not None:
                high = min(high, lo + (most - at_min) // per_ffn_params)
            if least is not None:
                low = max(low, lo - (at_min - least) // per_ffn_params)  # ceil division
    else:
        for at_min, least, most in bounds:
            if (most is not None and at_min > most) or (least is not None and at_min < least):
                return ()
    i, j = bisect.bisect_left(ascending, low), bisect.bisect_right(ascending, high)
    return ascending[i:j][::-1]


def rank_by(points: list[Point], proxy: Callable[[Point], float]) -> list[tuple[Point, float]]:
    """Points with their proxy value, best (highest) first; ties by key for reproducibility."""
    scored = [(p, proxy(p)) for p in points]
    scored.sort(key=lambda item: (-item[1], item[0].key()))
    return scored


def params_proxy(space: SearchSpace) -> Callable[[Point], float]:
    def proxy(point: Point) -> float:
        return float(space.arch(point.depth, **point.sizes()).n_params)

    return proxy
