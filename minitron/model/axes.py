"""The prunable axes: one entry each, and everything that lists axes reads this table (torch-free).

`TargetSpec`, the search space and its points, the candidates file, the prune / search / compare
tables and reports, and the `prune` and `search` options are derived from `AXES`. Adding an axis is
one entry here plus the family adapter's layout for it (config keys, parameter counts, tensor axes):

    Axis("experts", "--experts", part=MOE, help="experts per MoE block", config_keys=("n_routed_experts",),
         step="experts_per_group", step_name="expert groups", max_prune=None, column="experts"),

Which families have an axis follows from the block parts it sizes (`part`): an axis is present when
the architecture (or the family) has a block holding that part; `part=None` sizes every model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from minitron.model.arch import ATTENTION, BLOCK_PARTS, MAMBA, MLP, MOE

if TYPE_CHECKING:
    from minitron.model.adapters import Family
    from minitron.model.arch import Architecture

GRANULARITY = "granularity"  # a step given by `search --granularity`


@dataclass(frozen=True)
class Axis:
    """One prunable axis."""

    name: str  # the Architecture field (the depth axis: the block count), candidate-file key, option name
    flag: str  # the command-line flag of prune and search
    help: str  # what a size of it is, as a noun phrase ("hidden size (embedding channels)")
    config_keys: tuple[str, ...]  # the HF config key(s) the family adapters write it to
    part: str | None = None  # the block part (mixer) it sizes; None: every model has it
    # Step of search ranges: a number, GRANULARITY, or an Architecture field the sizes must be a
    # multiple of (`step_name` says what it is in errors and help).
    step: int | str = GRANULARITY
    step_name: str = ""
    max_prune: float | None = 0.4  # default --max-prune share; None: the source size unless asked
    column: str = ""  # short column name in tables
    note: str = ""  # appended to the help of both commands
    depth: bool = False  # the block count (pruned by dropping blocks, not by slicing)
    affine: bool = False  # params and memory are affine in it: search solves it in closed form

    @property
    def option(self) -> str:
        """The option (and run-file key) name: the flag without dashes."""
        return self.flag.lstrip("-").replace("-", "_")

    def step_of(self, source: Architecture, granularity: int) -> int:
        if isinstance(self.step, int):
            return self.step
        return granularity if self.step == GRANULARITY else getattr(source, self.step)

    @property
    def unit_field(self) -> str | None:
        """The Architecture field every size must be a multiple of (None: any size)."""
        return self.step if isinstance(self.step, str) and self.step != GRANULARITY else None

    def unit(self, source: Architecture) -> int | None:
        return getattr(source, self.unit_field) if self.unit_field else None

    def source_size(self, source: Architecture) -> int:
        return source.n_blocks if self.depth else getattr(source, self.name)

    def on(self, source: Architecture) -> bool:
        """`source` has blocks this axis sizes, and they have the unit (a Qwen3-MoE block has no shared expert)."""
        if self.part is None:
            return True
        return source.has_part(self.part) and (self.depth or getattr(source, self.name) > 0)

    def in_family(self, family: Family) -> bool:
        return self.part is None or any(self.part in BLOCK_PARTS[k] for k in family.block_kinds)

    def step_help(self) -> str:
        if isinstance(self.step, int):
            return f"step {self.step}" if self.step > 1 else ""
        if self.step == GRANULARITY:
            return "ranges step by --granularity"
        return f"multiples of the {self.step_name}"

    def prune_help(self) -> str:
        multiple = f" (multiple of the {self.step_name})" if self.unit_field else ""
        note = f"; {self.note}" if self.note else ""
        return f"Target {self.help}{multiple}{note}."

    def search_help(self) -> str:
        parts = [AXIS_SYNTAX]
        if self.step_help():
            parts.append(self.step_help())
        if self.note:
            parts.append(self.note)
        default = (
            "the source size"
            if self.max_prune is None
            else f"down to {self.max_prune:.0%} pruned (--max-prune)"
        )
        return f"{self.help[0].upper()}{self.help[1:]} to try: {'; '.join(parts)} [default: {default}]."


AXIS_SYNTAX = "a value (4480), a list (4352,4480), a range LO:HI in axis steps or LO:HI:STEP, or 'source'"

AXES: tuple[Axis, ...] = (
    Axis("layers", "--layers", "block count", ("num_hidden_layers",), step=1, max_prune=None, column="blocks",
         note="the least important blocks go (depth scores)", depth=True),
    Axis("hidden", "--hidden", "hidden size (embedding channels)", ("hidden_size",), column="hidden"),
    Axis("ffn", "--ffn", "FFN size (neurons per MLP)", ("intermediate_size",), part=MLP, column="FFN",
         affine=True),
    Axis("mamba_heads", "--mamba-heads", "Mamba heads", ("mamba_num_heads",), part=MAMBA,
         step="mamba_groups", step_name="Mamba groups", column="Mamba heads"),
    Axis("mamba_head_dim", "--mamba-head-dim", "Mamba head dimension", ("mamba_head_dim",), part=MAMBA, step=8,
         column="head dim"),  # ModelOpt's step
    Axis("attn_heads", "--attn-heads", "attention query heads", ("num_attention_heads",), part=ATTENTION,
         step="kv_heads", step_name="KV heads", max_prune=None, column="attn"),  # kept by default, as Nano 2
    # Mixture of experts. Experts go in steps of 8 (ModelOpt's); the router's rules (at least top-k,
    # an equal count per router group) are the family's check, so the search skips sizes that break them.
    Axis("experts", "--experts", "routed experts per MoE block (the same count in every block, chosen per block)",
         ("n_routed_experts", "num_experts"), part=MOE, step=8, column="experts",
         note="at least num_experts_per_tok"),
    Axis("expert_ffn", "--expert-ffn", "FFN size of each routed expert", ("moe_intermediate_size",), part=MOE,
         max_prune=None, column="expert FFN", note="multiples of 8"),
    Axis("shared_ffn", "--shared-ffn", "FFN size of the shared expert", ("moe_shared_expert_intermediate_size",),
         part=MOE, max_prune=None, column="shared FFN"),
)  # fmt: skip


# Readers go through these functions (not a copy of AXES taken at import), so a test can swap the table.
def axes() -> tuple[Axis, ...]:
    return AXES


def width_axes() -> tuple[Axis, ...]:
    """The axes pruned by slicing tensors (every axis but depth), in table order."""
    return tuple(a for a in AXES if not a.depth)


def width_names() -> tuple[str, ...]:
    return tuple(a.name for a in width_axes())


def depth_axis() -> Axis:
    return next(a for a in AXES if a.depth)


def axis(name: str) -> Axis:
    for a in AXES:
        if a.name == name:
            return a
    raise KeyError(name)


def axis_names() -> tuple[str, ...]:
    return tuple(a.name for a in AXES)
