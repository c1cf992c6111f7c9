"""Multi-GPU scaling of the Wan2.1-I2V-14B DiT: CFG-parallel x Ulysses, compiled, vs our own single GPU.

One torchrun gang of max(--sizes) processes (one per GPU, NVLink multicast off). Every rank builds
the full-size DiT with the same random bf16 weights and the same inputs. Per setting:

* **1 GPU** (rank 0 alone): the single-GPU path of the ``full`` profile -- diffsynth's
  ``model_fn_wan_video`` with torch.compile'd blocks -- for a CFG step (two forwards, what
  Exact/Default run) and a step without CFG (one forward, what a 4-step distilled preset runs).
  Also, eager: the same CFG step with PyTorch's default SDPA kernel and with SDPA forced to the
  flash backend (the kernel xfuser's TORCH_FLASH fallback used): their difference is how far two
  equally valid bf16 evaluations of this random network lie apart.
* **N GPUs** (ranks 0..N-1): :mod:`ex4d_engine.generation.wan.dit_parallel` with the same compiled
  blocks: CFG step as CFG-parallel x Ulysses N/2, the step without CFG as Ulysses N, and (ex4d only)
  the CFG step as Ulysses N with the two branches one after the other (what USP did before).

With ``--fp32-reference`` rank 1 computes the ex4d CFG step in fp32 from the same weights while rank 0
runs its single-GPU part, and every output is also compared with it.

Speed-up = single-GPU s/step of the same step kind / N-GPU s/step. Deviation = max |a-b| and
relative L2 against the single-GPU compiled output of the same kind.

    python bench/multigpu_scaling.py --gpus 0,1,2,3 --sizes 1,2,4 --settings ex4d,480p81 --steps 3 --out OUT
    python bench/multigpu_scaling.py --dry-run --sizes 1,2 --out OUT   # CPU, gloo, small DiT, eager

Writes ``OUT/scaling.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import timedelta

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ex4d_engine.generation.gpu_groups import MULTICAST_OFF_ENV, check_group_size  # noqa: E402

#: Wan2.1-I2V-14B DiT (diffsynth WanModel kwargs).
I2V_14B = dict(has_image_input=True, patch_size=[1, 2, 2], in_dim=36, dim=5120, ffn_dim=13824, freq_dim=256,
               text_dim=4096, out_dim=16, num_heads=40, num_layers=40, eps=1e-6)
#: --dry-run: 4 heads so Ulysses 2 and 4 split them.
SMALL = dict(has_image_input=True, patch_size=[1, 2, 2], in_dim=36, dim=128, ffn_dim=256, freq_dim=256, text_dim=32,
             out_dim=16, num_heads=4, num_layers=2, eps=1e-6)
SETTINGS = {"ex4d": (49, 512, 512), "480p81": (81, 480, 832)}  # frames, height, width
TEXT_TOKENS, CLIP_TOKENS, CFG_SCALE = 512, 257, 5.0
GIB = 1024 ** 3


# ---------------------------------------------------------------------- one rank
def build_random(cls, config: dict, device: str, dtype):
    """The model straight into uninitialised memory of ``dtype`` on ``device``, then random weights
    (fan-in scaled normal, unit norms): 33 GB of bf16 for the 14B DiT, never an fp32 copy."""
    from diffsynth.core.vram.initialization import skip_model_initialization

    with skip_model_initialization():
        model = cls(**config)
    model = model.to(dtype=dtype).to_empty(device=device)
    from ex4d_engine.generation.wan.tiny_models import randomise

    randomise(model)
    return model.eval().requires_grad_(False)


def deviation(got, ref) -> dict:
    got, ref = got.float(), ref.float().to(got.device)
    return {"max_abs": float((got - ref).abs().max()), "rel_l2": float((got - ref).norm() / ref.norm().clamp_min(1e-12)),
            "ref_abs_max": float(ref.abs().max())}


class Rank:
    def __init__(self, args):
        import torch
        import torch.distributed as dist

        from ex4d_engine.generation.wan.adapter import ensure_diffsynth

        os.environ.update(MULTICAST_OFF_ENV)
        ensure_diffsynth()
        self.torch, self.dist, self.args = torch, dist, args
        self.cuda = not args.dry_run
        if self.cuda:
            self.local = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(self.local)
            self.device, self.dtype, self.config = f"cuda:{self.local}", torch.bfloat16, I2V_14B
            dist.init_process_group("nccl", timeout=timedelta(minutes=20), device_id=torch.device(self.device))
        else:
            self.device, self.dtype, self.config = "cpu", torch.float32, SMALL
            dist.init_process_group("gloo", timeout=timedelta(minutes=20))
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.control = dist.new_group(backend="gloo")  # phase barriers without GPU work
        self.results: list[dict] = []

    def log(self, *parts):
        print(f"[rank {self.rank} {time.strftime('%H:%M:%S')}]", *parts, flush=True)

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def barrier(self):
        self.dist.barrier(group=self.control)

    def timed(self, step, steps: int, warmup: bool = True):
        """(median s/step after one warm-up, last output, peak GiB)."""
        torch = self.torch
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        if warmup:
            step()
        times = []
        for _ in range(steps):
            self.sync()
            begin = time.perf_counter()
            out = step()
            self.sync()
            times.append(time.perf_counter() - begin)
        peak = torch.cuda.max_memory_allocated() / GIB if self.cuda else 0.0
        return sorted(times)[len(times) // 2], out, peak

    def record(self, **entry):
        entry = {k: v for k, v in entry.items() if v is not None}
        self.results.append(entry)
        self.log(json.dumps(entry))
        if self.rank == 0:
            with open(os.path.join(self.args.out, "scaling.json"), "w") as handle:
                json.dump({"gpus": self.args.gpus, "steps": self.args.steps, "dry_run": self.args.dry_run,
                           "meta": self.meta, "results": self.results}, handle, indent=1)

    def run(self) -> int:
        torch, dist, args = self.torch, self.dist, self.args
        from diffsynth.models.wan_video_dit import WanModel
        from diffsynth.pipelines.wan_video import model_fn_wan_video

        from ex4d_engine.generation.wan.dit_parallel import ParallelDiT, ParallelGroups

        self.meta = {"torch": torch.__version__, "world": self.world,
                     "device": torch.cuda.get_device_name(0) if self.cuda else "cpu",
                     "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        torch.manual_seed(0)  # identical random weights on every rank
        start = time.perf_counter()
        dit = build_random(WanModel, self.config, self.device, self.dtype)
        self.meta["build_s"] = time.perf_counter() - start
        sizes = [n for n in args.sizes if n > 1]
        groups = {n: ParallelGroups(list(range(n))) for n in sizes}  # collective: all ranks, same order
        compile_blocks = self.cuda and not args.no_compile
        if compile_blocks:
            for block in dit.blocks:
                block.compile(dynamic=True)  # what diffsynth's compile_pipeline does for the full profile
        eager = lambda: torch.compiler.set_stance("force_eager") if compile_blocks else contextlib.nullcontext()
        single_path = "single" + (" compiled" if compile_blocks else "")

        for setting in args.settings:
            frames, height, width = SETTINGS[setting] if self.cuda else (5, 48, 80)
            t, h, w = (frames - 1) // 4 + 1, height // 8, width // 8
            tokens = t * (h // 2) * (w // 2)
            steps = args.steps if setting == "ex4d" else max(1, args.steps - 1)
            g = torch.Generator(self.device).manual_seed(1)
            rand = lambda *shape: torch.randn(*shape, generator=g, device=self.device, dtype=torch.float32).to(self.dtype)
            inputs = dict(latents=rand(1, 16, t, h, w), y=rand(1, 20, t, h, w), clip=rand(1, CLIP_TOKENS, 1280),
                          contexts=[rand(1, TEXT_TOKENS if self.cuda else 7, self.config["text_dim"]) for _ in range(2)],
                          timestep=torch.tensor([900.0], device=self.device, dtype=self.dtype))
            steppers = make_steppers(dit, inputs)
            cfg_sequential, cfg_merged, no_cfg = steppers
            base = dict(setting=setting, tokens=tokens)
            refs = {}
            # ---- 1 GPU
            fp32_file = os.path.join(args.work, f"fp32_{setting}.pt")
            with torch.no_grad():
                if self.rank == 0:
                    with eager():
                        s, out, peak = self.timed(lambda: cfg_sequential(model_fn_wan_video),
                                                  steps if setting == "ex4d" else 1, warmup=setting == "ex4d")
                        refs["eager"] = out
                        self.record(**base, gpus=1, kind="cfg", path="single eager, SDPA default", s_per_step=s,
                                    peak_gib=peak)
                        if self.cuda and setting == "ex4d":
                            from torch.nn.attention import SDPBackend, sdpa_kernel

                            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                                s, out, _ = self.timed(lambda: cfg_sequential(model_fn_wan_video), 1)
                            self.record(**base, gpus=1, kind="cfg", path="single eager, SDPA flash (xfuser's fallback)",
                                        s_per_step=s, vs_eager_default=deviation(out, refs["eager"]))
                    s, out, peak = self.timed(lambda: cfg_sequential(model_fn_wan_video), steps)
                    refs["cfg"] = out
                    self.record(**base, gpus=1, kind="cfg", path=single_path, baseline=True, s_per_step=s,
                                peak_gib=peak, vs_eager=deviation(out, refs["eager"]))
                    s, out, peak = self.timed(lambda: no_cfg(model_fn_wan_video), steps)
                    refs["no_cfg"] = out
                    self.record(**base, gpus=1, kind="no_cfg", path=single_path, baseline=True, s_per_step=s,
                                peak_gib=peak)
                elif self.rank == 1 and args.fp32_reference and setting == "ex4d" and self.cuda:
                    self.fp32_reference(dit, inputs, fp32_file)
            self.barrier()
            fp32 = None
            if self.rank == 0 and os.path.exists(fp32_file):
                fp32 = torch.load(fp32_file, map_location=self.device)
                self.record(**base, gpus=1, kind="cfg", path="single eager vs fp32", vs_fp32=deviation(refs["eager"], fp32))
                self.record(**base, gpus=1, kind="cfg", path=single_path + " vs fp32", vs_fp32=deviation(refs["cfg"], fp32))

            # ---- N GPUs
            for n in sizes:
                if self.rank < n:
                    parallel = ParallelDiT(dit, groups[n])
                    fn = parallel.wrap(model_fn_wan_video)
                    runs = [("cfg", f"CFG-parallel 2 x Ulysses {n // 2}", cfg_merged),
                            ("no_cfg", f"Ulysses {n}", no_cfg)]
                    if setting == "ex4d":
                        runs.append(("cfg", f"Ulysses {n}, branches in turn (no CFG split)", cfg_sequential))
                    for kind, path, step in runs:
                        try:
                            with torch.no_grad():
                                s, out, peak = self.timed(lambda: step(fn), steps)
                        except Exception as exc:  # noqa: BLE001 - recorded; the other runs go on
                            self.record(**base, gpus=n, kind=kind, path=path, error=f"{type(exc).__name__}: {exc}"[:800])
                            continue
                        if self.rank == 0:
                            self.record(**base, gpus=n, kind=kind, path=path, s_per_step=s, peak_gib=peak,
                                        vs_single=deviation(out, refs[kind]),
                                        vs_fp32=deviation(out, fp32) if fp32 is not None and kind == "cfg" else None)
                    parallel.remove()
                self.barrier()
            del refs
            if self.cuda:
                torch.cuda.empty_cache()
        dist.destroy_process_group()
        return 0

    def fp32_reference(self, dit, inputs, path):
        """The CFG step in fp32 (weights and inputs upcast from the same bf16 values, TF32 off), then back to bf16."""
        torch = self.torch
        from diffsynth.pipelines.wan_video import model_fn_wan_video

        start = time.perf_counter()
        try:
            for p in dit.parameters():  # one tensor at a time: the peak stays near the fp32 size
                p.data = p.data.float()
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            as32 = {k: ([c.float() for c in v] if isinstance(v, list) else v.float()) for k, v in inputs.items()}
            with torch.compiler.set_stance("force_eager"):
                out = make_steppers(dit, as32)[0](model_fn_wan_video)
            torch.save(out.float().cpu(), path)
            self.log(f"fp32 reference in {time.perf_counter() - start:.1f} s")
        except Exception as exc:  # noqa: BLE001 - an OOM here only loses the fp32 column
            self.log(f"fp32 reference failed: {type(exc).__name__}: {exc}"[:500])
        finally:
            for p in dit.parameters():
                p.data = p.data.to(self.dtype)
            torch.cuda.empty_cache()


def make_steppers(dit, inputs: dict):
    """(CFG step as two calls, CFG step as one merged call, step without CFG) for ``fn(**model_fn kwargs)``."""
    import torch

    def forward(fn, context, batch=1):
        return fn(dit=dit, latents=inputs["latents"], timestep=inputs["timestep"], context=context,
                  clip_feature=torch.cat([inputs["clip"]] * batch), y=torch.cat([inputs["y"]] * batch))

    def cfg_sequential(fn):  # what diffsynth's pipeline does without cfg_merge
        posi, nega = (forward(fn, c) for c in inputs["contexts"])
        return nega + CFG_SCALE * (posi - nega)

    def cfg_merged(fn):  # cfg_merge: both branches in one call, [positive, negative]
        posi, nega = forward(fn, torch.cat(inputs["contexts"]), batch=2).chunk(2)
        return nega + CFG_SCALE * (posi - nega)

    def no_cfg(fn):
        return forward(fn, inputs["contexts"][0])

    return cfg_sequential, cfg_merged, no_cfg


# ---------------------------------------------------------------------- driver
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", default="0", help="CUDA indices to use, e.g. 0,1,2,3")
    parser.add_argument("--sizes", default="1", help="group sizes, e.g. 1,2,4 (1 must come first)")
    parser.add_argument("--settings", default="ex4d,480p81")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per run (after one warm-up); 480p81 one less")
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", help="scratch folder shared by the ranks (default OUT/work)")
    parser.add_argument("--timeout-s", type=int, default=1800)
    parser.add_argument("--fp32-reference", action="store_true", help="rank 1 computes the ex4d CFG step in fp32")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="CPU, gloo, small 4-head DiT, eager")
    parser.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.settings = [s.strip() for s in args.settings.split(",")]
    args.work = args.work or os.path.join(args.out, "work")
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    if args.rank:
        return Rank(args).run()

    unknown = [s for s in args.settings if s not in SETTINGS]
    world = max(args.sizes)
    if unknown or args.sizes[0] != 1 or (not args.dry_run and world > len(args.gpus)):
        parser.error(f"settings must be among {list(SETTINGS)}; sizes start with 1 (the reference) and are at most "
                     f"the {len(args.gpus)} GPUs given")
    for size in args.sizes:
        check_group_size(size)
    env = dict(os.environ, **MULTICAST_OFF_ENV, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    if not args.dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(args.gpus[:world])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={world}",
               "--max-restarts=0", os.path.abspath(__file__), "--rank"] + [a for a in sys.argv[1:]]
    try:
        code = subprocess.run(command, env=env, cwd=REPO, timeout=args.timeout_s).returncode
    except subprocess.TimeoutExpired:  # the results written so far still count
        code = "timeout"
    path = os.path.join(args.out, "scaling.json")
    if not os.path.exists(path):
        print(f"the gang wrote no results (exit code {code})", file=sys.stderr)
        return 1
    with open(path) as handle:
        data = json.load(handle)
    data["exit_code"] = code
    print_table(data["results"])
    with open(path, "w") as handle:
        json.dump(data, handle, indent=1)
    return 0 if code == 0 and not any("error" in r for r in data["results"]) else 1


def print_table(results: list[dict]) -> None:
    single = {(r["setting"], r["kind"]): r["s_per_step"] for r in results if r.get("baseline")}
    print("| setting | tokens | step | GPUs | path | s/step | speed-up vs 1 GPU | efficiency | peak GiB/GPU | "
          "max abs / rel. L2 vs 1 GPU |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        if "s_per_step" not in r:
            if "error" in r:
                print(f"| {r['setting']} | {r['tokens']} | {r['kind']} | {r['gpus']} | {r['path']} | failed: "
                      f"{r['error'][:120]} | | | | |")
            continue
        base = single.get((r["setting"], r["kind"]))
        speedup = base / r["s_per_step"] if base else 0.0
        dev = r.get("vs_single") or r.get("vs_eager") or r.get("vs_eager_default")
        dev_text = f"{dev['max_abs']:.3g} / {dev['rel_l2']:.2%}" if dev else ""
        print(f"| {r['setting']} | {r['tokens']} | {r['kind']} | {r['gpus']} | {r['path']} | {r['s_per_step']:.3f} | "
              f"{speedup:.2f}x | {speedup / r['gpus']:.0%} | {r.get('peak_gib', 0):.1f} | {dev_text} |")
    for r in results:
        if "vs_fp32" in r and r.get("vs_fp32"):
            d = r["vs_fp32"]
            print(f"- {r['setting']} {r['gpus']} GPU(s) {r['path']}: vs fp32 max abs {d['max_abs']:.3g}, "
                  f"rel. L2 {d['rel_l2']:.2%}")


if __name__ == "__main__":
    sys.exit(main())
