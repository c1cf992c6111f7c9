"""The one module that talks to diffsynth (pinned ``diffsynth==2.1.12``).

What it uses of diffsynth: ``WanVideoPipeline.from_pretrained`` with per-model ``ModelConfig``
VRAM settings, ``MODEL_CONFIGS`` + ``hash_model_file`` for detection, the pipeline's units
(the prompt embedder is swapped for a caching one), ``progress_bar_cmd`` as the per-step hook,
``vae.encode`` and ``compile_pipeline``. The EX-4D ray latent enters through a forward hook on
``dit.patch_embedding``: added right after the patch embedding, on every step, in both guidance
branches -- exactly where the seed's patched ``WanModel.forward`` added it.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from ...errors import ResourceError
from ...torchvision_shim import apply_torchvision_shim

DIFFSYNTH_VERSION = "2.1.12"

def ensure_diffsynth():
    """Import diffsynth (after the shim), or raise ResourceError telling how to install it."""
    apply_torchvision_shim()
    try:
        import diffsynth
    except ImportError as exc:
        raise ResourceError(f"the Wan generator needs diffsynth=={DIFFSYNTH_VERSION}: "
                            f"pip install 'ex4d[generate]' ({exc})") from exc
    version = getattr(diffsynth, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("diffsynth")
    if version != DIFFSYNTH_VERSION:
        raise ResourceError(f"diffsynth {version} is installed; ex4d is built and tested against {DIFFSYNTH_VERSION}")
    return diffsynth


def _cpu_accelerator_api() -> None:
    """diffsynth's VRAM management calls ``torch.<device>.empty_cache`` / ``mem_get_info``; give the
    CPU device those two (no-op / host memory) so profiles also run on CPU, e.g. in tests."""
    if not hasattr(torch.cpu, "empty_cache"):
        torch.cpu.empty_cache = lambda: None
    if not hasattr(torch.cpu, "mem_get_info"):
        import psutil

        def mem_get_info(*args, **kwargs):
            vm = psutil.virtual_memory()
            return vm.available, vm.total

        torch.cpu.mem_get_info = mem_get_info


def detect_model(paths) -> tuple[Optional[str], Optional[dict], str]:
    """(diffsynth model name or None, its constructor kwargs, key/shape hash) of a file or shard list."""
    ensure_diffsynth()
    from diffsynth.configs import MODEL_CONFIGS
    from diffsynth.core.loader.file import hash_model_file

    digest = hash_model_file(paths)
    for config in MODEL_CONFIGS:
        if config["model_hash"] == digest:
            return config["model_name"], config.get("extra_kwargs"), digest
    return None, None, digest


def dit_target_shapes(config: dict) -> tuple[dict, int]:
    """LoRA target name -> (out, in), and the width, of a WanModel built from ``config`` on meta."""
    ensure_diffsynth()
    from diffsynth.models.wan_video_dit import WanModel

    from .lora import target_linears

    with torch.device("meta"):
        dit = WanModel(**config)
    return {n: (m.out_features, m.in_features) for n, m in target_linears(dit).items()}, dit.dim


def _vram_config(device: str, dtype: torch.dtype, streamed: bool) -> dict:
    """ModelConfig VRAM fields: resident (empty) or kept in host memory and run on ``device``."""
    if not streamed:
        return {}
    return dict(offload_device="cpu", offload_dtype=dtype, onload_device="cpu", onload_dtype=dtype,
                preparing_device=device, preparing_dtype=dtype, computation_device=device, computation_dtype=dtype)


@dataclass
class StageTimes:
    """Seconds spent per stage of the last window (device-synchronised)."""

    ray_encode: float = 0.0
    prepare: float = 0.0  # prompt (cached after the first), CLIP, first-frame VAE
    denoise: float = 0.0
    steps: int = 0
    decode: float = 0.0
    per_step: list = field(default_factory=list)


class WanPipeline:
    """A loaded diffsynth ``WanVideoPipeline`` plus the EX-4D camera encoder.

    Args:
        pipe: the diffsynth pipeline.
        camera_encoder: a :class:`.camera_encoder.CamVidEncoder` on the pipeline's device, or None
            for plain I2V.
    """

    def __init__(self, pipe, camera_encoder):
        self.pipe = pipe
        self.camera_encoder = camera_encoder
        self.times = StageTimes()
        #: ask diffsynth for both guidance branches in one DiT call (set by dit_parallel for CFG-parallel groups)
        self.cfg_merge = False
        self.cache_skips = 0
        self.last_latents = None
        self._cache_prompts()
        if getattr(pipe.text_encoder, "vram_management_enabled", False):
            self.stream_text_encoder(pipe)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(cls, files, *, device: str, dtype: torch.dtype, dit_streamed: bool, vram_limit_gib: Optional[float]):
        """Build the pipeline from a resolved model folder (:class:`.model_folder.ModelFiles`).

        The DiT is resident on ``device`` unless ``dit_streamed``; the T5 encoder always lives in
        host memory and runs on ``device`` (its output is cached per prompt).
        """
        ensure_diffsynth()
        from diffsynth.pipelines.wan_video import ModelConfig, WanVideoPipeline

        if str(device) == "cpu":
            _cpu_accelerator_api()
        os.environ.setdefault("DIFFSYNTH_SKIP_DOWNLOAD", "True")  # local files only, never the network

        configs = [
            ModelConfig(path=list(files.dit), **_vram_config(device, dtype, dit_streamed)),
            ModelConfig(path=files.text_encoder, **_vram_config(device, dtype, True)),
            ModelConfig(path=files.vae),
            ModelConfig(path=files.image_encoder),
        ]
        try:
            pipe = WanVideoPipeline.from_pretrained(
                torch_dtype=dtype, device=device, model_configs=configs,
                tokenizer_config=ModelConfig(path=files.tokenizer), vram_limit=vram_limit_gib,
                redirect_common_files=False)
        except ValueError as exc:  # diffsynth: "Cannot detect the model type. File: ..."
            raise ResourceError(f"a Wan model file is not recognised: {exc}. Run 'ex4d models check' on the folder") from exc
        missing = [n for n in ("dit", "text_encoder", "vae", "image_encoder") if getattr(pipe, n) is None]
        if missing:
            raise ResourceError(f"diffsynth loaded no {', '.join(missing)} from the model folder")
        return pipe

    @classmethod
    def assemble(cls, *, dit, text_encoder, vae, image_encoder, tokenizer_dir: str, device: str,
                 dtype: torch.dtype, dit_streamed: bool, vram_limit_gib: Optional[float], t5_streamed: bool = True):
        """Build a diffsynth pipeline from models already in memory (the benchmark's random
        full-size weights), with the same VRAM settings :meth:`load` gives file-loaded models."""
        ensure_diffsynth()
        from diffsynth.core.vram.layers import enable_vram_management
        from diffsynth.models.model_loader import ModelPool
        from diffsynth.models.wan_video_text_encoder import HuggingfaceTokenizer
        from diffsynth.pipelines.wan_video import WanVideoPipeline

        if str(device) == "cpu":
            _cpu_accelerator_api()
        pool = ModelPool()

        def place(model, class_path, streamed):
            if not streamed:
                return model.to(device=device, dtype=dtype).eval()
            config = _vram_config(device, dtype, True)
            model = model.to(device="cpu", dtype=dtype).eval()
            return enable_vram_management(model, pool.fetch_module_map(class_path, config),
                                          vram_config=config, vram_limit=vram_limit_gib)

        pipe = WanVideoPipeline(device=device, torch_dtype=dtype)
        pipe.dit = place(dit, "diffsynth.models.wan_video_dit.WanModel", dit_streamed)
        pipe.text_encoder = place(text_encoder, "diffsynth.models.wan_video_text_encoder.WanTextEncoder", t5_streamed)
        pipe.vae = vae.to(device=device, dtype=dtype).eval()
        pipe.image_encoder = image_encoder.to(device=device, dtype=dtype).eval()
        pipe.tokenizer = HuggingfaceTokenizer(name=tokenizer_dir, seq_len=512, clean="whitespace")
        pipe.height_division_factor = pipe.width_division_factor = pipe.vae.upsampling_factor * 2
        pipe.vram_management_enabled = pipe.check_vram_management_state()
        return pipe

    @staticmethod
    def stream_text_encoder(pipe) -> None:
        """Run T5 layer by layer from host memory (vram limit 0) instead of moving all 11 GB onto
        the GPU: it runs once per distinct prompt, so the transfer costs little and the peak stays low."""
        for module in pipe.text_encoder.modules():
            if hasattr(module, "vram_limit"):
                module.vram_limit = 0.0

    def _cache_prompts(self):
        """Swap diffsynth's prompt unit for one that keeps each prompt's T5 embedding, and its
        TeaCache unit for one that can hand out our step caches."""
        from diffsynth.pipelines.wan_video import WanVideoUnit_PromptEmbedder, WanVideoUnit_TeaCache

        class CachedPromptEmbedder(WanVideoUnit_PromptEmbedder):
            def __init__(self):
                super().__init__()
                self.cache: dict = {}

            def process(self, pipe, prompt, positive):
                if prompt not in self.cache:
                    if len(self.cache) >= 16:
                        self.cache.pop(next(iter(self.cache)))
                    with torch.autocast(torch.device(pipe.device).type, enabled=False):  # T5 never ran under autocast
                        self.cache[prompt] = super().process(pipe, prompt, positive)["context"]
                return {"context": self.cache[prompt]}

        class StepCacheUnit(WanVideoUnit_TeaCache):
            """While ``factory`` is set, each guidance branch gets ``factory(steps, branch)``."""

            def __init__(self):
                super().__init__()
                self.factory = None
                self.made: list = []

            def process(self, pipe, num_inference_steps, tea_cache_l1_thresh, tea_cache_model_id):
                if self.factory is None:
                    return super().process(pipe, num_inference_steps, tea_cache_l1_thresh, tea_cache_model_id)
                cache = self.factory(num_inference_steps, len(self.made) % 2)
                self.made.append(cache)
                return {"tea_cache": cache}

        self.step_cache_unit = StepCacheUnit()
        swap = {WanVideoUnit_PromptEmbedder: CachedPromptEmbedder, WanVideoUnit_TeaCache: lambda: self.step_cache_unit}
        self.pipe.units = [swap[type(u)]() if type(u) in swap else u for u in self.pipe.units]

    @property
    def dit(self):
        return self.pipe.dit

    @property
    def device(self):
        return self.pipe.device

    def compile(self, dynamic: bool = True) -> None:
        """Regional torch.compile of the DiT blocks (diffsynth's own helper). ``dynamic=False`` for
        the FP8 blocks: torchao's float8 tensors trace far faster with static shapes."""
        self.pipe.compile_pipeline(compile_models=["dit"], dynamic=dynamic)

    def enable_prefetch(self) -> bool:
        """Pinned host weights + next-block prefetch for a streamed DiT (:mod:`.streaming`); CUDA only."""
        if not str(self.pipe.device).startswith("cuda") or not getattr(self.pipe.dit, "vram_management_enabled", False):
            return False
        from .streaming import BlockPrefetcher

        self.prefetcher = BlockPrefetcher(self.pipe.dit, self.pipe.device)
        return True

    def _sync(self):
        if str(self.pipe.device).startswith("cuda"):
            torch.cuda.synchronize()

    # -- one window ------------------------------------------------------------------------------
    @torch.no_grad()
    def ray_latent(self, colour: np.ndarray, mask: np.ndarray, tiled: bool) -> torch.Tensor:
        """The camera encoder's output for one window.

        Args:
            colour: (T, H, W, 3) float32 in [-1, 1] (hidden = -1).
            mask: (T, H, W) float32 in {-1, +1}; mapped x2-1 once more here ({-3, +1} into the VAE).
        """
        from .conditioning import vae_mask_input

        pipe = self.pipe
        start = time.perf_counter()
        if getattr(pipe.vae, "vram_management_enabled", False):  # else the VAE is resident: keep the DiT where it is
            pipe.load_models_to_device(["vae"])
        to_video = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(3, 0, 1, 2)[None].to(
            device=pipe.device, dtype=pipe.torch_dtype)
        encode = lambda v: pipe.vae.encode(v, device=pipe.device, tiled=tiled).to(device=pipe.device, dtype=pipe.torch_dtype)
        colour_latent = encode(to_video(colour))
        mask3 = np.repeat(vae_mask_input(mask)[..., None], 3, axis=-1)
        mask_latent = encode(to_video(mask3))
        ray = self.camera_encoder(colour_latent, mask_latent)
        self._sync()
        self.times.ray_encode = time.perf_counter() - start
        return ray

    @contextlib.contextmanager
    def _ray_hook(self, ray: Optional[torch.Tensor]):
        """Add ``ray`` to the DiT patch embedding's output while the context is open."""
        if ray is None:
            yield
            return
        handle = self.pipe.dit.patch_embedding.register_forward_hook(lambda module, args, out: out + ray.to(out.dtype))
        try:
            yield
        finally:
            handle.remove()

    def _stepper(self, on_step: Optional[Callable[[int, int], None]], timestep_holder=None):
        """progress_bar_cmd for diffsynth: times each step and calls ``on_step(i, n)`` before step i
        (which may raise JobCancelledError to stop between steps). ``timestep_holder.value`` gets the
        fp32 timestep of the step (original precision)."""
        times = self.times

        def iterate(timesteps):
            n = len(timesteps)
            self._sync()
            times.prepare = time.perf_counter() - times._t0
            loop_start = last = time.perf_counter()
            for i, t in enumerate(timesteps):
                if on_step is not None:
                    on_step(i, n)
                if timestep_holder is not None:
                    timestep_holder.value = t.detach().float().reshape(1)
                yield t
                self._sync()
                now = time.perf_counter()
                times.per_step.append(now - last)
                last = now
            times.denoise = time.perf_counter() - loop_start
            times.steps = n
            times._t_decode = time.perf_counter()

        return iterate

    @contextlib.contextmanager
    def _sampling_mode(self, step_cache: Optional[str], original_precision: bool):
        """Install the step cache / original-precision pieces for one call, and remove them after."""
        from diffsynth.pipelines.wan_video import WanVideoUnit_NoiseInitializer

        pipe = self.pipe
        self.step_cache_unit.made = []
        holder = None
        saved_units, saved_fn = list(pipe.units), pipe.model_fn
        if step_cache == "magcache":
            from .step_cache import MagCache

            self.step_cache_unit.factory = lambda steps, branch: MagCache(steps, branch=branch)
        elif step_cache is not None:
            raise ValueError(f"unknown step cache {step_cache!r}")
        autocast = contextlib.nullcontext()
        if original_precision:
            from .original_precision import TimestepHolder, fp32_noise_unit, make_original_model_fn

            holder = TimestepHolder()
            pipe.model_fn = make_original_model_fn(holder)
            pipe.units = [fp32_noise_unit() if type(u) is WanVideoUnit_NoiseInitializer else u for u in pipe.units]
            if pipe.torch_dtype != torch.float32:
                autocast = torch.autocast(torch.device(pipe.device).type, dtype=pipe.torch_dtype)
        try:
            with autocast:
                yield holder
        finally:
            self.step_cache_unit.factory = None
            pipe.units, pipe.model_fn = saved_units, saved_fn

    @torch.no_grad()
    def denoise(self, *, image: np.ndarray, ray: Optional[torch.Tensor], prompt: str, negative_prompt: str,
                width: int, height: int, frames: int, steps: int, cfg_scale: float, shift: float, seed: int,
                tiled: bool, on_step: Optional[Callable[[int, int], None]] = None, step_cache: Optional[str] = None,
                original_precision: bool = False, cfg_merge: bool = False,
                keep_latents: bool = False) -> np.ndarray:
        """Run the I2V pipeline for one window. Returns (frames, height, width, 3) uint8.

        ``step_cache``: "magcache" or None; ``original_precision``: EX-4D's DiffSynth numerics
        (:mod:`.original_precision`); ``cfg_merge``: both guidance branches as one batch of 2
        (streamed profiles: the weights cross the bus once per step); ``keep_latents``: keep the
        final latents in ``self.last_latents`` (CPU float32; the benchmark's deviation numbers).
        """
        from PIL import Image

        times = self.times
        ray_time = times.ray_encode
        self.times = times = StageTimes(ray_encode=ray_time)
        times._t0 = time.perf_counter()
        vae = self.pipe.vae
        if keep_latents:
            def decode(latents, *args, **kwargs):
                self.last_latents = latents.detach().float().cpu()
                return type(vae).decode(vae, latents, *args, **kwargs)
            vae.decode = decode
        try:
            with self._ray_hook(ray), self._sampling_mode(step_cache, original_precision) as holder:
                video = self.pipe(
                    prompt=prompt, negative_prompt=negative_prompt, input_image=Image.fromarray(image),
                    seed=seed, height=height, width=width, num_frames=frames, cfg_scale=cfg_scale,
                    num_inference_steps=steps, sigma_shift=shift, tiled=tiled, cfg_merge=(cfg_merge or self.cfg_merge) and cfg_scale != 1.0,
                    progress_bar_cmd=self._stepper(on_step, holder))
        finally:
            if keep_latents:
                del vae.decode
        self.cache_skips = sum(getattr(c, "skipped", 0) for c in self.step_cache_unit.made)
        self._sync()
        times.decode = time.perf_counter() - times._t_decode
        return np.stack([np.asarray(frame, dtype=np.uint8) for frame in video])
