"""Full-size depth model configurations with random weights, saved in the Hugging Face layout (bench only).

Random weights say nothing about depth quality; they give the real compute and memory of each backend.
"""

from __future__ import annotations

from pathlib import Path

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def save_depth_anything_v2_small(folder: Path) -> int:
    """Depth Anything V2 Small's published config (ViT-S/14 DINOv2 + DPT head, 24.8 M parameters); returns #params."""
    from ex4d_engine.depth.hf_models import import_transformers

    t = import_transformers()
    config = t.DepthAnythingConfig(
        backbone_config=dict(model_type="dinov2", hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                             mlp_ratio=4, image_size=518, patch_size=14, out_indices=[3, 6, 9, 12],
                             reshape_hidden_states=False, layerscale_value=1.0),
        reassemble_hidden_size=384, neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64,
        head_hidden_size=32, reassemble_factors=[4, 2, 1, 0.5], depth_estimation_type="relative")
    model = t.DepthAnythingForDepthEstimation(config)
    model.save_pretrained(folder)
    t.DPTImageProcessor(size={"height": 518, "width": 518}, keep_aspect_ratio=True, ensure_multiple_of=14,
                        do_pad=False, resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD).save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def save_depth_pro(folder: Path) -> int:
    """Depth Pro's default config (3 DINOv2-L/16 encoders at 384 px patches of a 1536 px image, FOV head)."""
    import json

    from ex4d_engine.depth.hf_models import import_transformers

    import torch

    t = import_transformers()
    # built on the GPU when there is one: random init of ~950 M parameters on the CPU takes minutes
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = t.DepthProForDepthEstimation(t.DepthProConfig(use_fov_model=True))
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "DepthProImageProcessor", "do_resize": True, "do_rescale": True,
        "do_normalize": True, "size": {"height": 1536, "width": 1536}, "resample": 2,
        "rescale_factor": 1 / 255, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return sum(p.numel() for p in model.parameters())
