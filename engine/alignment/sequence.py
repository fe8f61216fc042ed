"""LLaVA ``plain`` sequences: [BOS] + projected image tokens + caption tokens, loss only on the caption tokens."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

IGNORE = -100


def build_inputs(
    llm: nn.Module, prefix: Sequence[int], image_embeds: torch.Tensor, captions: Sequence[Sequence[int]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs_embeds B x L x H, attention_mask B x L, labels B x L) with right padding.

    ``labels[b, t]`` is the token id whose log-probability is read at position ``t - 1`` (HF
    convention); everything but caption tokens is ``IGNORE``.
    """
    embed = llm.get_input_embeddings()
    b, n_img = image_embeds.shape[:2]
    n_pre = len(prefix)
    longest = max(len(c) for c in captions)
    length = n_pre + n_img + longest
    device = image_embeds.device
    pad_ids = torch.zeros(b, n_pre + longest, dtype=torch.long, device=device)
    labels = torch.full((b, length), IGNORE, dtype=torch.long, device=device)
    mask = torch.zeros(b, length, dtype=torch.long, device=device)
    for i, cap in enumerate(captions):
        if n_pre:
            pad_ids[i, :n_pre] = torch.tensor(list(prefix), device=device)
        pad_ids[i, n_pre : n_pre + len(cap)] = torch.tensor(list(cap), device=device)
        labels[i, n_pre + n_img : n_pre + n_img + len(cap)] = torch.tensor(list(cap), device=device)
        mask[i, : n_pre + n_img + len(cap)] = 1
    text = embed(pad_ids)
    image_embeds = image_embeds.to(text.dtype)
    inputs = torch.cat([text[:, :n_pre], image_embeds, text[:, n_pre:]], dim=1)
    return inputs, mask, labels


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p of each labelled token B x (L-1), mask of labelled positions) from next-token logits, in float32."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    valid = shift_labels != IGNORE
    logp = torch.log_softmax(shift_logits, dim=-1)
    picked = logp.gather(-1, shift_labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * valid, valid


def _supports_logits_to_keep(llm: nn.Module) -> bool:
    return "logits_to_keep" in inspect.signature(llm.forward).parameters


def caption_logprobs(
    llm: nn.Module, inputs: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, n_context: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``token_logprobs`` computing LM-head logits only where captions are predicted.

    Captions start at the same index ``n_context`` (= prefix + image tokens) in every row, so only
    the last ``L - n_context + 1`` positions need logits (``logits_to_keep`` when the model has it):
    with 576 image tokens and short captions that is ~15x less logits memory and LM-head work.
    """
    keep = inputs.shape[1] - n_context + 1
    kwargs = {"logits_to_keep": keep} if _supports_logits_to_keep(llm) else {}
    logits = llm(inputs_embeds=inputs, attention_mask=mask, **kwargs).logits
    return token_logprobs(logits[:, -keep:], labels[:, -keep:])
