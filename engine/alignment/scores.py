"""A scores: A-v1 (max-cosine to CLIP reference embeddings) and A-v3 (caption log-likelihood under the frozen LLM).

A-v1, clean definition (default, ``variant="clean"``): for each image, each *target* token (projected
vision token in the LLM input space) is matched to its most similar *reference* token (max cosine,
no positional pairing, token counts may differ); the per-image score is the mean over target tokens,
the per-reference score the mean over images, and A the mean over references.

``variant="released"`` reproduces the authors' ``A_score/compute.py``: the same per-token max and
averaging order, but an image whose target and reference tensors differ in shape is *skipped*
(the mean runs over the remaining images) and features are L2-normalised with eps=1e-10 first.
Their script compares against a single reference (CLIP@336) only. See docs/alignment.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from engine.errors import InputError

VARIANTS = ("clean", "released")


def _normalise(x: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.float()
    return x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + eps)


def max_cosine_mean(
    target: torch.Tensor, reference: torch.Tensor, chunk: int = 1024, eps: float = 1e-8, device: str | None = None
) -> float:
    """Mean over target tokens of the max cosine similarity to any reference token, in float32, chunked.

    Peak extra memory is ``chunk x reference_tokens`` floats plus float32 copies of the inputs.
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk (target tokens per block) must be a positive integer, got {chunk!r}")
    if target.ndim != 2 or reference.ndim != 2:
        raise InputError(f"expected [tokens, dim] tensors, got {tuple(target.shape)} and {tuple(reference.shape)}")
    if target.shape[1] != reference.shape[1]:
        raise InputError(f"embedding widths differ: target {target.shape[1]} vs reference {reference.shape[1]}")
    if device is not None:
        target, reference = target.to(device), reference.to(device)
    ref_t = _normalise(reference, eps).T.contiguous()
    total = 0.0
    for start in range(0, target.shape[0], chunk):
        block = _normalise(target[start : start + chunk], eps)
        total += float((block @ ref_t).amax(dim=1).double().sum())
    return total / target.shape[0]


def a_v1(
    target: Iterable[torch.Tensor],
    references: Mapping[str, Iterable[torch.Tensor]],
    chunk: int = 1024,
    variant: str = "clean",
    device: str | None = None,
) -> dict:
    """A-v1 of a target setting against reference settings (see module docstring).

    ``target`` and each reference yield one ``[tokens, dim]`` tensor per image, in the same image
    order (dtype free; computed in float32). Returns ``{"A", "per_reference", "n_images",
    "skipped", "variant"}``; different image counts -> InputError. ``device`` (e.g. ``"cuda"``) moves
    each image's tensors there for the matmul.
    """
    if variant not in VARIANTS:
        raise InputError(f"unknown A-v1 variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if not references:
        raise InputError("A-v1 needs at least one reference setting")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"--chunk (target tokens per block) must be a positive integer, got {chunk!r}")
    names = list(references)
    sums = dict.fromkeys(names, 0.0)
    counts = dict.fromkeys(names, 0)
    skipped = dict.fromkeys(names, 0)
    eps = 1e-10 if variant == "released" else 1e-8
    iterators = {name: iter(references[name]) for name in names}
    n_images = 0
    sentinel = object()
    for tgt in target:
        n_images += 1
        for name in names:
            ref = next(iterators[name], sentinel)
            if ref is sentinel:
                raise InputError(f"reference {name!r} has fewer images ({n_images - 1}) than the target")
            if variant == "released" and tuple(ref.shape) != tuple(tgt.shape):
                skipped[name] += 1
                continue
            sums[name] += max_cosine_mean(tgt, ref, chunk=chunk, eps=eps, device=device)
            counts[name] += 1
    for name in names:
        if next(iterators[name], sentinel) is not sentinel:
            raise InputError(f"reference {name!r} has more images than the target ({n_images})")
    if n_images == 0:
        raise InputError("the target has no images")
    per_reference = {}
    for name in names:
        if counts[name] == 0:
            raise InputError(f"no image of reference {name!r} could be compared (all shapes differ from the target)")
        per_reference[name] = sums[name] / counts[name]
    a_value = sum(per_reference.values()) / len(per_reference)
    if a_value != a_value or abs(a_value) == float("inf"):  # never report a NaN A as a result
        raise InputError(f"A-v1 is not finite ({a_value}); check the dumps for NaN or inf values")
    return {
        "A": a_value,
        "per_reference": per_reference,
        "n_images": n_images,
        "skipped": skipped,
        "variant": variant,
    }


def __getattr__(name: str):
    # A-v3 lives in engine.alignment.loglik (it needs an encoder, projector and LLM); re-exported lazily here.
    if name == "a_v3_loglik":
        from engine.alignment.loglik import a_v3_loglik

        return a_v3_loglik
    raise AttributeError(name)
