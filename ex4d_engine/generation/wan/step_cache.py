"""MagCache for Wan2.1-I2V-14B-480P: skip the 40 DiT blocks on some steps and reuse the last
computed residual (blocks' output minus input) instead.

Deterministic: which steps are skipped depends only on the published magnitude ratios below, the
step count and the three settings -- never on the data -- so the same steps are skipped with random
benchmark weights as with the real ones. Ratios: MagCache4Wan2.1 (Zehong-Ma/MagCache,
``magcache_generate.py``), "480P" list, measured there at 40 steps for the conditional and the
unconditional branch; other step counts take the nearest entry, as MagCache itself does. Settings
E024K6R02 (threshold 0.24, at most 6 skips in a row, first 20 % of steps always computed) are the
README's I2V-480P command.

Plugs into diffsynth's TeaCache slot of ``model_fn_wan_video`` (``check`` / ``update`` / ``store``),
one object per guidance branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Per step (40 steps) conditional/unconditional interleaved, with the two leading 1.0 of the source.
WAN21_I2V_480P_MAG_RATIOS = np.array([1.0] * 2 + [
    0.98783, 0.98993, 0.97559, 0.97593, 0.98311, 0.98319, 0.98202, 0.98225, 0.9888, 0.98878, 0.98762, 0.98759,
    0.98957, 0.98971, 0.99052, 0.99043, 0.99383, 0.99384, 0.98857, 0.9886, 0.99065, 0.99068, 0.98845, 0.98847,
    0.99057, 0.99057, 0.98957, 0.98961, 0.98601, 0.9861, 0.98823, 0.98823, 0.98756, 0.98759, 0.98808, 0.98814,
    0.98721, 0.98724, 0.98571, 0.98572, 0.98543, 0.98544, 0.98157, 0.98165, 0.98411, 0.98413, 0.97952, 0.97953,
    0.98149, 0.9815, 0.9774, 0.97742, 0.97825, 0.97826, 0.97355, 0.97361, 0.97085, 0.97087, 0.97056, 0.97055,
    0.96588, 0.96587, 0.96113, 0.96124, 0.9567, 0.95681, 0.94961, 0.94969, 0.93973, 0.93988, 0.93217, 0.93224,
    0.91878, 0.91896, 0.90955, 0.90954, 0.92617, 0.92616])


@dataclass(frozen=True)
class MagCacheSettings:
    threshold: float = 0.24
    max_skips: int = 6
    retention: float = 0.2


def _nearest(ratios: np.ndarray, steps: int) -> np.ndarray:
    if steps == 1:
        return ratios[-1:]
    index = np.round(np.arange(steps) * (len(ratios) - 1) / (steps - 1)).astype(int)
    return ratios[index]


def skip_plan(steps: int, settings: MagCacheSettings = MagCacheSettings(), branch: int = 0) -> list[bool]:
    """For each step, True when the blocks are skipped (``branch`` 0 = conditional, 1 = unconditional)."""
    ratios = _nearest(WAN21_I2V_480P_MAG_RATIOS[branch::2], steps)
    plan, ratio, error, run = [], 1.0, 0.0, 0
    for step in range(steps):
        skip = False
        if step >= int(steps * settings.retention):
            ratio *= ratios[step]
            run += 1
            error += abs(1.0 - ratio)
            if error < settings.threshold and run <= settings.max_skips:
                skip = True
            else:
                ratio, error, run = 1.0, 0.0, 0
        plan.append(skip)
    return plan


class MagCache:
    """One guidance branch's cache, called by diffsynth's ``model_fn_wan_video`` once per step."""

    def __init__(self, steps: int, settings: MagCacheSettings = MagCacheSettings(), branch: int = 0):
        self.plan = skip_plan(steps, settings, branch)
        self.step = 0
        self.skipped = 0
        self.residual = None
        self._input = None

    def check(self, dit, x, t_mod) -> bool:
        """True: skip the blocks this step (``update`` follows); False: run them (``store`` follows)."""
        skip = self.plan[self.step] and self.residual is not None
        self.step = (self.step + 1) % len(self.plan)
        if skip:
            self.skipped += 1
        else:
            self._input = x
        return skip

    def update(self, x):
        return x + self.residual

    def store(self, x):
        self.residual = x - self._input
        self._input = None
