"""Speed presets: one user-facing choice of how a Wan shot is sampled and at what precision.

| preset     | steps | CFG | DiT linears          | step caching            | extra LoRA                 |
|------------|-------|-----|----------------------|-------------------------|----------------------------|
| `exact`    | 25    | 5   | bf16 (compiled)      | none                    | --                         |
| `original` | 25    | 5   | bf16, eager; latents, timestep embedding, modulation, residual stream and head in fp32 (EX-4D's DiffSynth numerics) | none | -- |
| `default`  | 25    | 5   | FP8 e4m3 (torchao)   | none                    | --                         |
| `fast`     | 25    | 5   | FP8 e4m3 (torchao)   | MagCache E024K6R02      | --                         |
| `turbo`    | 4     | off | FP8 e4m3 (torchao)   | none                    | lightx2v 4-step distill    |

Shift 5 everywhere (the seed's). Measured times and deviations: docs/PERFORMANCE.md (## Speed presets);
what each changes: docs/generation.md. Presets that share weights (`exact`/`original`, `default`/`fast`)
run on one loaded generator; switching to another weight family reloads it.

Pure data and validation: importing this module imports no torch (the add-on and the server read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ...errors import InputError
from ...protocol import DEFAULT_SPEED, SPEED_PRESETS

#: The released file name of the step-distill LoRA (lightx2v/Wan2.1-Distill-Loras), looked up in the
#: Wan model folder and its parent.
TURBO_LORA_FILE = "wan2.1_i2v_lora_rank64_lightx2v_4step.safetensors"
TURBO_LORA_REPO = "lightx2v/Wan2.1-Distill-Loras"


@dataclass(frozen=True)
class SpeedPreset:
    """How one shot is sampled.

    Attributes:
        name: the job field's value.
        steps, cfg_scale, shift: the sampler.
        fp8: FP8 e4m3 weights and activations for the DiT block linears (torchao).
        step_cache: "magcache" (deterministic residual reuse) or None.
        distill_lora: fuse the lightx2v 4-step distill LoRA (``TURBO_LORA_FILE``).
        original_precision: EX-4D's DiffSynth numerics (fp32 latents / time embedding / modulation /
            residual stream / head, bf16 autocast for the rest).
        compile: torch.compile the DiT blocks (``full`` profile on CUDA only).

    The names, one-line summaries and expected times are the protocol's (``protocol.SPEED_PRESETS``).
    """

    name: str
    steps: int
    cfg_scale: float
    shift: float
    fp8: bool
    step_cache: Optional[str]
    distill_lora: bool
    original_precision: bool
    compile: bool

    @property
    def summary(self) -> str:
        return SPEED_PRESETS[self.name].summary

    @property
    def weights(self) -> tuple[bool, bool]:
        """What the loaded DiT weights depend on: presets with equal ``weights`` share a generator."""
        return (self.fp8, self.distill_lora)


PRESETS = {p.name: p for p in (
    SpeedPreset("exact", 25, 5.0, 5.0, fp8=False, step_cache=None, distill_lora=False, original_precision=False, compile=True),
    SpeedPreset("original", 25, 5.0, 5.0, fp8=False, step_cache=None, distill_lora=False, original_precision=True, compile=False),
    SpeedPreset("default", 25, 5.0, 5.0, fp8=True, step_cache=None, distill_lora=False, original_precision=False, compile=True),
    SpeedPreset("fast", 25, 5.0, 5.0, fp8=True, step_cache="magcache", distill_lora=False, original_precision=False, compile=True),
    SpeedPreset("turbo", 4, 1.0, 5.0, fp8=True, step_cache=None, distill_lora=True, original_precision=False, compile=True),
)}

DEFAULT_PRESET = DEFAULT_SPEED
assert list(PRESETS) == list(SPEED_PRESETS), "the protocol declares the same presets, in the same order"


def get_preset(name: Optional[str]) -> SpeedPreset:
    """The preset called ``name`` (None: :data:`DEFAULT_PRESET`); InputError naming the choices otherwise."""
    if name is None:
        name = DEFAULT_PRESET
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown speed preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def check_steps(preset: SpeedPreset, steps: Optional[int]) -> int:
    """The steps a shot runs: the preset's, or ``steps`` where the preset allows another count."""
    if steps is None:
        return preset.steps
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    if preset.distill_lora and steps != preset.steps:
        raise InputError(f"the {preset.name!r} preset runs exactly {preset.steps} steps (its LoRA is distilled for "
                         f"them); got steps={steps}. Leave steps unset or choose another preset")
    return steps
