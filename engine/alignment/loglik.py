"""A-v3: mean per-token log-likelihood of ground-truth captions under the frozen LLM fed the projected image tokens.

Sequences are LLaVA ``plain``: [BOS] + projected image tokens + caption tokens (+ EOS), and only the
caption tokens (with the EOS that LLaVA also trains on) are scored. ``averaging="pooled"`` (default)
is the mean over all scored tokens of all captions pooled together (long captions weigh more);
``averaging="per_caption"`` is the mean of per-caption means. Both are returned. Higher (closer to
0) means better alignment. The chosen pairs are the first ``n`` of a seeded permutation, recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.alignment.data import Pair
from engine.alignment.features import TokenCache, prepare
from engine.alignment.llm import caption_ids, prefix_ids
from engine.alignment.sequence import build_inputs, caption_logprobs
from engine.encoders.base import VisionEncoder
from engine.errors import InputError

AVERAGING = ("pooled", "per_caption")


def select_pairs(count: int, n: int, seed: int) -> list[int]:
    """Indices of the ``n`` pairs scored: first ``n`` of a seeded permutation, in ascending order."""
    if n < 1:
        raise InputError("n must be at least 1")
    if n >= count:
        return list(range(count))
    return sorted(torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:n].tolist())


def _tokens(encoder: VisionEncoder, images: list, cache: TokenCache | None) -> torch.Tensor:
    if all(isinstance(im, (str, Path)) for im in images) and cache is not None:
        return cache.tokens(list(images))
    arrays = [np.asarray(im) if not isinstance(im, (str, Path)) else _read(im) for im in images]
    with torch.inference_mode():
        return encoder.tokens(prepare(arrays, encoder.preprocessing)).float()


def _read(path: str | Path) -> np.ndarray:
    from engine.alignment.features import read_image

    return read_image(path)


@torch.no_grad()
def a_v3_loglik(
    encoder: VisionEncoder,
    projector: nn.Module,
    llm: nn.Module,
    tokenizer,
    pairs: Sequence[Pair | tuple],
    n: int = 100,
    seed: int = 0,
    batch_size: int = 8,
    averaging: str = "pooled",
    cache: TokenCache | None = None,
) -> dict:
    """A-v3 over ``n`` image-caption pairs (``Pair`` or ``(image path | uint8 array, caption)``)."""
    if averaging not in AVERAGING:
        raise InputError(f"unknown averaging {averaging!r}; choose one of {', '.join(AVERAGING)}")
    if not pairs:
        raise InputError("A-v3 needs at least one image-caption pair")
    chosen = select_pairs(len(pairs), n, seed)
    items = [(p.id, p.image, p.caption) if isinstance(p, Pair) else (str(i), p[0], p[1]) for i, p in ((i, pairs[i]) for i in chosen)]
    device = next(llm.parameters()).device
    dtype = next(llm.parameters()).dtype
    projector = projector.to(device).eval()
    prefix = prefix_ids(tokenizer)
    sums, counts = [], []
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        feats = _tokens(encoder, [b[1] for b in batch], cache).to(device)
        caps = [caption_ids(tokenizer, b[2]) for b in batch]
        embeds = projector(feats.float()).to(dtype)
        inputs, mask, labels = build_inputs(llm, prefix, embeds, caps)
        picked, valid = caption_logprobs(llm, inputs, mask, labels, len(prefix) + embeds.shape[1])
        sums.extend(picked.double().sum(dim=1).cpu().tolist())
        counts.extend(valid.sum(dim=1).cpu().tolist())
    total_tokens = int(sum(counts))
    pooled = float(sum(sums) / total_tokens)
    per_caption = [s / c for s, c in zip(sums, counts, strict=True)]
    per_caption_mean = float(np.mean(per_caption))
    return {
        "A": pooled if averaging == "pooled" else per_caption_mean,
        "averaging": averaging,
        "A_pooled": pooled,
        "A_per_caption_mean": per_caption_mean,
        "n_images": len(items),
        "n_tokens": total_tokens,
        "seed": seed,
        "indices": chosen,
        "ids": [b[0] for b in items],
        "per_caption": per_caption,
    }
