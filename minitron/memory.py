"""How many bytes a model needs to serve a context: weights, KV cache, Mamba SSM and conv state.

The formulas (METHOD.md section 3) need only an `Architecture`, so a 12B model is sized without
torch. For batch B and context S:

    weights = n_params * bytes(weight dtype)
    kv      = n_attention_mixers * 2 * B * S * kv_heads * head_dim * bytes(kv dtype)
    ssm     = n_mamba_blocks * B * mamba_heads * mamba_head_dim * ssm_state * bytes(ssm dtype)
    conv    = n_mamba_blocks * B * (d_inner + 2 * groups * ssm_state) * conv_columns * bytes(conv dtype)

They match, byte for byte, the tensors transformers' DynamicCache holds after a prefill
(tests/test_memory.py measures them). What is not counted: activations and logits of the forward
pass, the CUDA context and allocator slack; that is what `--headroom` is for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from minitron.errors import MinitronError, preset
from minitron.model.arch import ATTENTION, MAMBA, Architecture
from minitron.units import (
    DTYPE_BYTES,
    format_bytes,
    parse_bytes,
    parse_dtype,
    parse_fraction,
    parse_tokens,
)

MiB = 2**20


# ---- engines ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Engine:
    """What a serving engine keeps per sequence for a Mamba-2 block."""

    name: str
    # transformers 5.x keeps the last conv_kernel inputs (conv state (B, conv_dim, conv_kernel));
    # vLLM keeps conv_kernel - 1, all the causal convolution needs for the next token.
    conv_columns_short: int
    # transformers 5.x ignores `mamba_ssm_cache_dtype`: its scan returns the state in float32 and the
    # cache keeps that tensor. vLLM allocates the state in the config's `mamba_ssm_cache_dtype`.
    ssm_dtype_from_config: bool

    def conv_columns(self, conv_kernel: int) -> int:
        return conv_kernel - self.conv_columns_short

    def default_ssm_dtype(self, arch: Architecture, compute_dtype: str) -> str:
        if not self.ssm_dtype_from_config:
            return "float32"
        configured = arch.extra.get("mamba_ssm_cache_dtype")
        return parse_dtype(configured, "mamba_ssm_cache_dtype") if configured else compute_dtype


ENGINES = {
    "transformers": Engine("transformers", conv_columns_short=0, ssm_dtype_from_config=False),
    "vllm": Engine("vllm", conv_columns_short=1, ssm_dtype_from_config=True),
}


def get_engine(name: str) -> Engine:
    return preset(ENGINES, name, "--engine", "engine")


# ---- GPUs ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GPU:
    name: str
    memory_bytes: int  # total memory as nvidia-smi reports it (the CUDA context takes a few 100 MiB of it)
    bandwidth_bytes_per_s: float  # peak DRAM bandwidth from NVIDIA's datasheet
    bf16_flops: float = 0.0  # dense bf16 tensor-core peak from NVIDIA's datasheet (training time plans)


# Memory: the total nvidia-smi prints for each card (e.g. "0MiB / 23028MiB" on an AWS g5 A10G).
# Bandwidth: NVIDIA datasheets -- A10/A10G 600 GB/s; L4 300 GB/s; A100 40GB SXM 1,555 GB/s;
# A100 80GB SXM 2,039 GB/s; H100 SXM 3.35 TB/s; GeForce RTX 4090 1,008 GB/s.
# Dense bf16: A10G 70 TFLOPS (AWS; the A10 is 125), L4 121, A100 312, H100 SXM 989, RTX 4090 165
# (fp32 accumulate).
GPUS = {
    "a10g": GPU("NVIDIA A10G", 23028 * MiB, 600e9, 70e12),
    "l4": GPU("NVIDIA L4", 23034 * MiB, 300e9, 121e12),
    "a100-40g": GPU("NVIDIA A100-SXM4-40GB", 40960 * MiB, 1555e9, 312e12),
    "a100-80g": GPU("NVIDIA A100-SXM4-80GB", 81920 * MiB, 2039e9, 312e12),
    "h100-80g": GPU("NVIDIA H100 80GB HBM3", 81559 * MiB, 3.35e12, 989e12),
    "rtx4090": GPU("NVIDIA GeForce RTX 4090", 24564 * MiB, 1008e9, 165e12),
}


def get_gpu(name: str) -> GPU:
    return preset(GPUS, name, "--gpu", "GPU")


# ---- budget -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """Memory a model may use: total x (1 - headroom) - reserve.

    The Nano 2 budget is 22 GiB x 0.95 - 1.3 GiB (a framework buffer, and room for a vision encoder).
    """

    total_bytes: int
    headroom: float = 0.0
    reserve_bytes: int = 0
    source: str = ""

    def __post_init__(self) -> None:
        if self.total_bytes <= 0:
            raise MinitronError(f"--budget: must be more than zero bytes, got {self.total_bytes}")
        if not 0 <= self.headroom < 1:
            raise MinitronError(f"--headroom: must be at least 0% and below 100%, got {self.headroom}")
        if self.reserve_bytes < 0:
            raise MinitronError(f"--reserve: must not be negative, got {self.reserve_bytes}")
        if self.usable_bytes <= 0:
            raise MinitronError(
                f"--headroom/--reserve leave nothing of the {format_bytes(self.total_bytes)} budget"
            )

    @property
    def usable_bytes(self) -> int:
        return int(self.total_bytes * (1 - self.headroom)) - self.reserve_bytes

    def describe(self) -> str:
        """'22.00 GiB - 5% - 1.30 GiB = 19.60 GiB'."""
        parts = [format_bytes(self.total_bytes)]
        if self.headroom:
            parts.append(f"{self.headroom * 100:g}%")
        if self.reserve_bytes:
            parts.append(format_bytes(self.reserve_bytes))
        text = " - ".join(parts)
        return text if len(parts) == 1 else f"{text} = {format_bytes(self.usable_bytes)}"

    @classmethod
    def from_options(
        cls,
        budget: str | None = None,
        gpu: str | None = None,
        headroom: str | None = None,
        reserve: str | None = None,
    ) -> Budget | None:
        """The budget of `--budget` (or of `--gpu`'s memory when no --budget), or None when neither."""
        if budget is None and gpu is None:
            if headroom is not None or reserve is not None:
                raise MinitronError("--headroom/--reserve need a budget: give --budget or --gpu")
            return None
        if budget is not None:
            total, source = parse_bytes(budget, "--budget"), f"--budget {budget}"
        else:
            card = get_gpu(gpu)
            total, source = card.memory_bytes, card.name
        return cls(
            total_bytes=total,
            headroom=parse_fraction(headroom, "--headroom") if headroom is not None else 0.0,
            reserve_bytes=parse_bytes(reserve, "--reserve", allow_zero=True) if reserve is not None else 0,
            source=source,
        )


# ---- the terms ----------------------------------------------------------------------------------
def compute_dtype(weight_dtype: str) -> str:
    """The dtype activations (and so KV and conv state) run in: 8-bit weights compute in bfloat16."""
    return weight_dtype if DTYPE_BYTES[weight_dtype] >= 2 else "bfloat16"


def weights_bytes(arch: Architecture, dtype: str) -> int:
    """Every expert stays resident: the total, not the active, parameters (plus float32 routers)."""
    return arch.n_params * DTYPE_BYTES[dtype] + arch.family.extra_weight_bytes(arch, DTYPE_BYTES[dtype])


def kv_cache_bytes(arch: Architecture, context_tokens: int, batch: int, dtype: str) -> int:
    # keys and values, each (B, kv_heads, S, head_dim), per attention block
    per_block = 2 * batch * arch.kv_heads * context_tokens * arch.head_dim
    return arch.count_part(ATTENTION) * per_block * DTYPE_BYTES[dtype]


def ssm_state_bytes(arch: Architecture, batch: int, dtype: str) -> int:
    # recurrent state (B, heads, head_dim, ssm_state) per Mamba block; independent of the context
    per_block = batch * arch.mamba_heads * arch.mamba_head_dim * arch.ssm_state
    return arch.count_part(MAMBA) * per_block * DTYPE_BYTES[dtype]


def conv_state_bytes(arch: Architecture, batch: int, dtype: str, engine: Engine) -> int:
    # conv state (B, conv_dim, columns) per Mamba block; conv_dim = x, B and C channels
    per_block = batch * arch.mamba_conv_dim * engine.conv_columns(arch.conv_kernel)
    return arch.count_part(MAMBA) * per_block * DTYPE_BYTES[dtype]


@dataclass(frozen=True)
class MemoryEstimate:
    engine: str
    context_tokens: int
    batch: int
    weight_dtype: str
    kv_dtype: str
    ssm_dtype: str
    conv_dtype: str
    params: int
    weights_bytes: int
    kv_cache_bytes: int
    ssm_state_bytes: int
    conv_state_bytes: int

    @property
    def cache_bytes(self) -> int:
        return self.kv_cache_bytes + self.ssm_state_bytes + self.conv_state_bytes

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.cache_bytes


def estimate_memory(
    arch: Architecture,
    context_tokens: int,
    batch: int = 1,
    weight_dtype: str = "bfloat16",
    kv_dtype: str | None = None,
    ssm_dtype: str | None = None,
    engine: str = "transformers",
) -> MemoryEstimate:
    """Bytes to serve `batch` sequences of `context_tokens` tokens with `engine`.

    KV and conv state default to the compute dtype; the SSM state to what the engine keeps
    (transformers: float32; vLLM: the config's mamba_ssm_cache_dtype).
    """
    eng = get_engine(engine)
    weight_dtype = parse_dtype(weight_dtype, "--dtype")
    act_dtype = compute_dtype(weight_dtype)
    kv_dtype = parse_dtype(kv_dtype, "--kv-dtype") if kv_dtype else act_dtype
    ssm_dtype = parse_dtype(ssm_dtype, "--ssm-dtype") if ssm_dtype else eng.default_ssm_dtype(arch, act_dtype)
    return MemoryEstimate(
        engine=eng.name,
        context_tokens=context_tokens,
        batch=batch,
        weight_dtype=weight_dtype,
        kv_dtype=kv_dtype,
        ssm_dtype=ssm_dtype,
        conv_dtype=act_dtype,
        params=arch.n_params,
        weights_bytes=weights_bytes(arch, weight_dtype),
        kv_cache_bytes=kv_cache_bytes(arch, context_tokens, batch, kv_dtype),
        ssm_state_bytes=ssm_state_bytes(arch, batch, ssm_dtype),
        conv_state_bytes=conv_state_bytes(arch, batch, act_dtype, eng),
    )


# ---- how a model is served ----------------------------------------------------------------------
DEFAULT_CONTEXT = "128k"
DEFAULT_GPU = "a10g"  # whose bandwidth the decode estimate of a search uses when no --gpu is given


@dataclass(frozen=True)
class ServingSpec:
    """How a model is served: what estimate sizes, what search fits under its budget, what a candidates
    file records (and compare and the run report read back). One set of options (`from_options`)."""

    context_tokens: int = 131072
    batch: int = 1
    weight_dtype: str = "bfloat16"
    kv_dtype: str | None = None
    ssm_dtype: str | None = None
    engine: str = "transformers"
    budget: Budget | None = None
    gpu: str | None = None  # a GPU preset name (GPUS)

    def __post_init__(self) -> None:
        for flag, value in (("--context", self.context_tokens), ("--batch", self.batch)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MinitronError(f"{flag}: must be at least 1, got {value!r}")
        get_engine(self.engine)
        parse_dtype(self.weight_dtype, "--dtype")
        for flag, value in (("--kv-dtype", self.kv_dtype), ("--ssm-dtype", self.ssm_dtype)):
            if value is not None:
                parse_dtype(value, flag)
        if self.gpu is not None:
            get_gpu(self.gpu)

    @classmethod
    def from_options(
        cls,
        context: str | int = DEFAULT_CONTEXT,
        batch: int = 1,
        budget: str | None = None,
        gpu: str | None = None,
        headroom: str | None = None,
        reserve: str | None = None,
        dtype: str = "bfloat16",
        kv_dtype: str | None = None,
        ssm_dtype: str | None = None,
        engine: str = "transformers",
    ) -> ServingSpec:
        """From the serving options by name (the commands' option names); every error names its flag."""
        return cls(
            context_tokens=parse_tokens(context, "--context"),
            batch=batch,
            weight_dtype=dtype,
            kv_dtype=kv_dtype,
            ssm_dtype=ssm_dtype,
            engine=engine,
            budget=Budget.from_options(budget, gpu, headroom, reserve),
            gpu=gpu,
        )

    def usable_bytes(self, command: str) -> int:
        """The budget's usable bytes; one error line when `command` needs a budget and has none."""
        if self.budget is None:
            raise MinitronError(
                f"{command} needs a memory budget: give --budget (e.g. 22GiB) or --gpu (e.g. a10g)"
            )
        return self.budget.usable_bytes

    @property
    def gpu_preset(self) -> GPU | None:
        return get_gpu(self.gpu) if self.gpu is not None else None

    def memory(self, arch: Architecture) -> MemoryEstimate:
        return estimate_memory(
            arch,
            context_tokens=self.context_tokens,
            batch=self.batch,
            weight_dtype=self.weight_dtype,
            kv_dtype=self.kv_dtype,
            ssm_dtype=self.ssm_dtype,
            engine=self.engine,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what a candidates file carries under "serving")."""
        d = asdict(self)
        if self.budget is not None:
            d["budget"]["usable_bytes"] = self.budget.usable_bytes
        return d

    @staticmethod
    def option_names() -> tuple[str, ...]:
        """The serving options by name (what from_options takes; the CLI declares one option each)."""
        import inspect

        return tuple(inspect.signature(ServingSpec.from_options).parameters)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServingSpec:
        budget = d.get("budget")
        if budget is not None:
            budget = Budget(**{k: v for k, v in budget.items() if k != "usable_bytes"})
        return cls(**{**d, "budget": budget})
