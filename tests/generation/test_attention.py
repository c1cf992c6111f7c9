"""Which attention kernel the Wan DiT runs (ex4d_engine/generation/wan/attention.py), on the real diffsynth module."""

import pytest

from ex4d_engine.generation.wan.adapter import ensure_diffsynth
from ex4d_engine.generation.wan.attention import BACKENDS, select_attention


def flags():
    from diffsynth.models import wan_video_dit

    return {flag: getattr(wan_video_dit, flag) for flag, _ in BACKENDS.values() if flag is not None}


def test_sdpa_turns_every_other_kernel_off():
    ensure_diffsynth()
    assert select_attention("sdpa") == "sdpa"
    assert not any(flags().values())


@pytest.mark.parametrize("name", ["flash4", "flash3", "sage"])
def test_a_kernel_that_is_not_installed_falls_back_to_sdpa(name, caplog):
    ensure_diffsynth()
    try:
        __import__(BACKENDS[name][1])
    except ImportError:
        pass
    else:
        pytest.skip(f"{name} is installed here")
    assert select_attention(name) == "sdpa"
    assert not any(flags().values())
    assert "not installed" in caplog.text


def test_an_unknown_kernel_is_refused_with_the_choices():
    ensure_diffsynth()
    with pytest.raises(ValueError, match="flash4"):
        select_attention("flash5")


def test_fp8_granularity_is_checked_before_anything_is_quantised():
    """The bench's --fp8-granularity choice (ex4d_engine/generation/wan/fp8.py)."""
    from torch import nn

    from ex4d_engine.generation.wan.fp8 import apply_fp8

    model = nn.Module()
    model.blocks = nn.ModuleList([nn.Linear(4, 4)])
    with pytest.raises(ValueError, match="'row' or 'tensor'"):
        apply_fp8(model, granularity="column")
    assert type(model.blocks[0].weight) is nn.Parameter  # untouched
