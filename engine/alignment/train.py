"""Stage-1 projector training as a resumable job: frozen encoder + frozen LLM, caption next-token loss.

Recipe (LLaVA-1.5 stage 1, paper defaults): AdamW, lr 1e-3, linear warmup over 3% of the steps then
cosine decay to 0, global batch 256 reached by gradient accumulation, 1 epoch, no weight decay.
The batch loss is the pooled mean over all caption tokens of the global batch (each micro-batch's
summed log-likelihood is divided by the global batch's token count, so accumulation is exact).
bf16 autocast on CUDA, float32 on CPU. Checkpoints (projector, optimizer, scheduler, torch RNG,
step, per-epoch data-order seed, loss history) go to the run folder every ``checkpoint_every``
steps and on cancel; a restarted job continues from the last one and ends at the same step count.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from engine import config
from engine.alignment import records
from engine.alignment.data import load_pairs
from engine.alignment.features import TokenCache, build_encoder
from engine.alignment.llm import caption_ids, llm_fingerprint, load_llm, prefix_ids
from engine.alignment.projector import build_projector, save_projector
from engine.alignment.sequence import build_inputs, caption_logprobs
from engine.errors import InputError
from engine.hashing import hash_file, hash_obj

TARGET = "engine.alignment.train:run_job"
CODE_VERSION = "align-train-1"
DEFAULTS = {
    "lr": 1e-3, "batch_size": 256, "micro_batch_size": 16, "epochs": 1, "max_steps": None, "warmup_ratio": 0.03,
    "weight_decay": 0.0, "checkpoint_every": 50, "seed": 0, "projector_type": "mlp2x_gelu", "max_samples": None,
    "threads": None, "device": "auto", "max_caption_tokens": 256,
}
# The demo LM is tiny: one CPU thread beats two (thread sync dominates, worse on a shared machine).
DEMO_OVERRIDES = {"lr": 3e-3, "batch_size": 16, "micro_batch_size": 16, "epochs": 2, "checkpoint_every": 10, "threads": 1}
DEMO_ENCODERS = ("efficientnet-lite0", "pixels-8", "alignment-pixel-patches")


def demo_encoder_name() -> str:
    """The first demo-friendly offline encoder the registry offers (its own pixel fallback otherwise)."""
    try:
        from engine.encoders.registry import list_encoders

        names = {spec.name for spec in list_encoders(include_uploaded=False) if spec.offline_available()}
    except Exception:  # registry not installed yet or not usable: use the local baseline
        names = set()
    return next((n for n in DEMO_ENCODERS if n in names), "alignment-pixel-patches")


def resolve_params(params: dict) -> dict:
    """Fill defaults (demo overrides when ``demo``), build demo data/LLM, check required keys."""
    p = {**DEFAULTS, **(DEMO_OVERRIDES if params.get("demo") else {}), **{k: v for k, v in params.items() if v is not None}}
    if p.get("demo"):
        from engine.alignment.demo import demo_dataset, demo_llm

        if not p.get("data"):
            data_json, images = demo_dataset()
            p["data"], p["images"] = str(data_json), str(images)
        p.setdefault("llm", str(demo_llm(Path(p["data"]))))
        p.setdefault("encoder", demo_encoder_name())
    missing = [k for k in ("encoder", "llm", "data", "images") if not p.get(k)]
    if missing:
        raise InputError(f"projector training needs {', '.join('--' + m for m in missing)} (or --demo)")
    for key in ("batch_size", "micro_batch_size", "epochs", "checkpoint_every"):
        if int(p[key]) < 1:
            raise InputError(f"{key} must be at least 1")
    return p


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warmup to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _order(n: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()


def run_job(params: dict, ctx) -> dict:
    """Train (or resume training) a stage-1 projector; returns loss_first/last, steps, checkpoint path."""
    p = resolve_params(params)
    threads = torch.get_num_threads()
    if p["threads"]:
        torch.set_num_threads(int(p["threads"]))
    try:
        return _train(p, ctx)
    finally:
        torch.set_num_threads(threads)


def _train(p: dict, ctx) -> dict:
    work = Path(p.get("run_dir") or ctx.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    pairs = load_pairs(p["data"], p["images"])
    if p["max_samples"]:
        pairs = pairs[: int(p["max_samples"])]
    device = "cuda" if torch.cuda.is_available() and p["device"] in ("auto", "cuda") else "cpu"
    use_bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    ctx.log(f"loading LLM {p['llm']} and encoder {p['encoder']} on {device}")
    llm, tokenizer = load_llm(p["llm"], device=device, dtype=torch.bfloat16 if use_bf16 else torch.float32)
    encoder = build_encoder(p["encoder"], device=device)
    cache = TokenCache(encoder, batch_size=int(p["micro_batch_size"]))
    hidden = int(llm.get_input_embeddings().weight.shape[1])

    torch.manual_seed(int(p["seed"]))
    projector = build_projector(encoder.embed_dim, hidden, p["projector_type"]).to(device)
    optimizer = torch.optim.AdamW(projector.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    n = len(pairs)
    batch, micro = int(p["batch_size"]), int(p["micro_batch_size"])
    steps_per_epoch = math.ceil(n / batch)
    total = steps_per_epoch * int(p["epochs"])
    if p["max_steps"]:
        total = min(total, int(p["max_steps"]))
    warmup = max(1, math.ceil(float(p["warmup_ratio"]) * total)) if float(p["warmup_ratio"]) > 0 else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))
    recipe_key = hash_obj([CODE_VERSION, {k: v for k, v in p.items() if k not in ("run_dir", "checkpoint_every", "threads")}, n])

    ckpt_path = work / "checkpoint.pt"
    step, losses = 0, []
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("recipe_key") != recipe_key:
            raise InputError(f"{work} holds a checkpoint of a different training recipe; use a fresh run folder")
        projector.load_state_dict(state["projector"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, losses = int(state["step"]), list(state["losses"])
        ctx.log(f"resumed from step {step}")

    def save_checkpoint() -> None:
        tmp = work / "checkpoint.tmp"
        torch.save({
            "recipe_key": recipe_key, "projector": projector.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "step": step, "losses": losses,
            "order_seed": int(p["seed"]), "steps_per_epoch": steps_per_epoch,
        }, tmp)
        tmp.replace(ckpt_path)

    prefix = prefix_ids(tokenizer)
    cap_ids = [caption_ids(tokenizer, pair.caption)[: int(p["max_caption_tokens"])] for pair in pairs]
    image_hashes: dict[int, str] = {}  # filled lazily: hashing a large dataset up front would read every image

    def image_hash(i: int) -> str:
        if i not in image_hashes:
            image_hashes[i] = hash_file(pairs[i].image)
        return image_hashes[i]

    started, samples = time.perf_counter(), 0
    ctx.progress(step, total, f"step {step}/{total}")
    while step < total:
        epoch, within = divmod(step, steps_per_epoch)
        order = _order(n, int(p["seed"]), epoch)
        batch_idx = order[within * batch : (within + 1) * batch]
        n_tokens = sum(len(cap_ids[i]) for i in batch_idx)
        optimizer.zero_grad(set_to_none=True)
        batch_loss = 0.0
        for start in range(0, len(batch_idx), micro):
            idx = batch_idx[start : start + micro]
            feats = cache.tokens([pairs[i].image for i in idx], [image_hash(i) for i in idx]).to(device)
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
                inputs, mask, labels = build_inputs(llm, prefix, projector(feats), [cap_ids[i] for i in idx])
                picked, _ = caption_logprobs(llm, inputs, mask, labels, len(prefix) + feats.shape[1])
            loss = -picked.sum() / n_tokens
            loss.backward()
            batch_loss += float(loss.detach())
        optimizer.step()
        scheduler.step()
        step += 1
        samples += len(batch_idx)
        losses.append(batch_loss)
        ctx.metric("loss", step, batch_loss)
        ctx.progress(step, total, f"step {step}/{total} loss {batch_loss:.4f}")
        if step % int(p["checkpoint_every"]) == 0 or step == total:
            save_checkpoint()
        if ctx.cancelled():
            save_checkpoint()
            ctx.check_cancelled()
    elapsed = time.perf_counter() - started

    out = save_projector(projector, work / "projector.safetensors")
    sha = hash_file(out)
    final = config.subdir("projectors") / f"{sha}.safetensors"
    if not final.exists():
        final.write_bytes(out.read_bytes())
    records.record_projector(p["encoder"], p["llm"], encoder.embed_dim, hidden, str(final), "trained" + (" (demo)" if p.get("demo") else ""), sha)
    return {
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "steps": step,
        "total_steps": total,
        "losses": losses,
        "checkpoint": str(final),
        "run_dir": str(work),
        "projector_sha": sha,
        "encoder": p["encoder"],
        "encoder_hash": encoder.weights_hash(),
        "llm": p["llm"],
        "llm_hash": llm_fingerprint(p["llm"]),
        "n_pairs": n,
        "samples_per_s": samples / elapsed if elapsed > 0 and samples else None,
        "feature_cache": {"hits": cache.hits, "misses": cache.misses},
        "demo": bool(p.get("demo")),
        "note": "smoke-scale demo run, not a result" if p.get("demo") else "",
    }
