"""EX-4D's camera-video encoder (``CamVidEncoder``), with the released parameter names so
``ex4d.ckpt`` loads key for key.

It VAE-encodes the masked colour render and the mask video (the mask after the second x2-1,
see :mod:`.conditioning`), concatenates the two 16-channel latents, runs three 1x1x1 convs and a
(1,2,2) patchify conv. The result has the DiT patch embedding's shape and is added to it on
every step and in both guidance branches (:mod:`.adapter`).
"""

from __future__ import annotations

import torch
from torch import nn

#: Released sizes: VAE latent 16 channels, hidden 1024, DiT width 5120.
LATENT_CHANNELS = 16
HIDDEN_CHANNELS = 1024


class CamVidEncoder(nn.Module):
    """latents (B, 32, F, h, w) -> tokens-shaped (B, dit_dim, F, h/2, w/2)."""

    def __init__(self, in_channels: int = LATENT_CHANNELS, hidden_channels: int = HIDDEN_CHANNELS,
                 out_channels: int = 5120):
        super().__init__()
        self.latent_encoder = nn.Sequential(
            nn.Conv3d(in_channels * 2, hidden_channels, kernel_size=1),
            nn.SiLU(),
            nn.Conv3d(hidden_channels, hidden_channels, kernel_size=1),
            nn.SiLU(),
            nn.Conv3d(hidden_channels, hidden_channels, kernel_size=1),
        )
        self.latent_patch_embedding = nn.Conv3d(hidden_channels, out_channels, kernel_size=(1, 2, 2),
                                                stride=(1, 2, 2))
        # Zero-initialised, as released: an untrained adapter leaves the I2V model unchanged.
        nn.init.zeros_(self.latent_patch_embedding.weight)
        nn.init.zeros_(self.latent_patch_embedding.bias)

    def forward(self, colour_latent: torch.Tensor, mask_latent: torch.Tensor) -> torch.Tensor:
        latent = torch.cat([colour_latent, mask_latent], dim=1)
        return self.latent_patch_embedding(self.latent_encoder(latent))
