"""Stage-1 projector training as a resumable job: frozen encoder + frozen LLM, caption next-token loss.

Recipe (LLaVA-1.5 stage 1, paper defaults): AdamW, lr 1e-3, linear warmup over 3% of the steps then
cosine decay to 0, global batch 256 reached by gradient accumulation, 1 epoch, no weight decay.
The batch loss is the pooled mean over all caption tokens of the global batch (each micro-batch's
summed log-likelihood is divided by the global batch's token count, so accumulation is exact).
Runs under ``accelerate`` (bf16 autocast on CUDA, float32 on CPU); with ``num_processes > 1`` or
under ``torchrun`` / ``accelerate launch`` each rank trains on a strided shard of every global batch
(DDP), and only the main rank writes files. Optional gradient checkpointing of the frozen LLM.
Checkpoints (projector, optimizer, scheduler, torch RNG, step, per-epoch data-order seed, loss
history) go to the run folder every ``checkpoint_every`` steps and on cancel; a restarted job
continues from the last one (with any process count) and ends at the same step count.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engine import config
from engine.alignment import distributed, records
from engine.alignment.data import load_pairs
from engine.alignment.features import TokenCache, build_encoder
from engine.alignment.llm import caption_ids, llm_fingerprint, load_llm, prefix_ids
from engine.alignment.projector import build_projector, save_projector
from engine.alignment.sequence import build_inputs, caption_logprobs
from engine.atomic import atomic_path
from engine.errors import InputError
from engine.hashing import hash_file, hash_obj
from engine.jobs import targets

TARGET = targets.PROJECTOR_TRAINING
CODE_VERSION = "align-train-1"
DEFAULTS = {
    "lr": 1e-3, "batch_size": 256, "micro_batch_size": 16, "epochs": 1, "max_steps": None, "warmup_ratio": 0.03,
    "weight_decay": 0.0, "checkpoint_every": 50, "seed": 0, "projector_type": "mlp2x_gelu", "max_samples": None,
    "threads": None, "device": "auto", "max_caption_tokens": 256, "num_processes": 1, "gradient_checkpointing": False,
}
# Execution settings that do not change the recipe: a checkpoint resumes under any of their values.
EXECUTION_KEYS = ("run_dir", "checkpoint_every", "threads", "num_processes", "gradient_checkpointing", "fresh")
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
    for key in ("batch_size", "micro_batch_size", "epochs", "checkpoint_every", "num_processes"):
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
    """Train (or resume training) a stage-1 projector; returns loss_first/last, steps, checkpoint path.

    ``num_processes > 1`` (outside an existing launch) starts that many data-parallel ranks through
    ``torch.distributed.run`` and relays their progress; a one-process run whose device or precision differs from
    this process's accelerate state runs in a child process the same way; under ``accelerate launch`` / ``torchrun``
    each rank runs the loop itself and only the main rank stores the projector.
    """
    launched = distributed.world_size_from_env() > 1
    accelerator = distributed.make_accelerator(params.get("device") or DEFAULTS["device"]) if launched else None
    with accelerator.main_process_first() if launched else contextlib.nullcontext():  # demo data is built once
        p = resolve_params(params)
    threads = torch.get_num_threads()
    if p["threads"]:
        torch.set_num_threads(int(p["threads"]))
    try:
        if not launched and (int(p["num_processes"]) > 1 or not distributed.fits_this_process(p["device"])):
            gpus = torch.cuda.device_count() if distributed.wants_cuda(p["device"]) else 0
            if 0 < gpus < int(p["num_processes"]):
                raise InputError(f"num_processes {p['num_processes']} exceeds the {gpus} visible GPU(s); use at most {gpus} or --device cpu")
            p["run_dir"] = str(p.get("run_dir") or ctx.work_dir)
            if p.pop("fresh", False):
                (Path(p["run_dir"]) / "checkpoint.pt").unlink(missing_ok=True)
            result = distributed.launch({**params, **p, "fresh": False}, ctx, int(p["num_processes"]))
            return finalize(p, result)
        accelerator = accelerator or distributed.make_accelerator(p["device"])
        result = run_loop(p, ctx, accelerator)
        if not accelerator.is_main_process:
            return {**result, "checkpoint": None}
        return finalize(p, result)
    finally:
        torch.set_num_threads(threads)


def _enable_gradient_checkpointing(llm) -> None:
    """Checkpoint the frozen LLM's layers without putting it in train mode (dropout stays off).

    HF layers checkpoint only when ``self.training``; the flag is set on the checkpointing layers
    alone (``Module.training = True`` does not recurse), so their attention/MLP submodules stay in eval.
    """
    if not getattr(llm, "supports_gradient_checkpointing", False):
        raise InputError(f"{type(llm).__name__} does not support gradient checkpointing")
    if hasattr(llm, "activation_checkpointing_enable"):  # transformers >= 5 name
        llm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    llm.config.use_cache = False  # no KV cache is needed for a loss, and HF warns about it under checkpointing
    for module in llm.modules():
        if getattr(module, "gradient_checkpointing", False) is True:
            module.training = True


@dataclass
class _Frozen:
    """The frozen parts of a run: LLM, tokenizer and the encoder with its token cache."""

    llm: torch.nn.Module
    tokenizer: object
    encoder: object
    cache: TokenCache
    hidden: int


def _load_frozen(p: dict, ctx, accelerator) -> _Frozen:
    device = accelerator.device
    use_bf16 = accelerator.mixed_precision == "bf16"
    ctx.log(f"loading LLM {p['llm']} and encoder {p['encoder']} on {device} ({accelerator.num_processes} process(es), "
            f"precision {accelerator.mixed_precision})")
    llm, tokenizer = load_llm(p["llm"], device=device, dtype=torch.bfloat16 if use_bf16 else torch.float32)
    if p["gradient_checkpointing"]:
        _enable_gradient_checkpointing(llm)
    encoder = build_encoder(p["encoder"], device=str(device))
    return _Frozen(llm, tokenizer, encoder, TokenCache(encoder, batch_size=int(p["micro_batch_size"])),
                   int(llm.get_input_embeddings().weight.shape[1]))


def _schedule(n: int, p: dict) -> tuple[int, int, int]:
    """Steps per epoch, total steps and warmup steps of the recipe for ``n`` pairs."""
    steps_per_epoch = math.ceil(n / int(p["batch_size"]))
    total = steps_per_epoch * int(p["epochs"])
    if p["max_steps"]:
        total = min(total, int(p["max_steps"]))
    warmup = max(1, math.ceil(float(p["warmup_ratio"]) * total)) if float(p["warmup_ratio"]) > 0 else 0
    return steps_per_epoch, total, warmup


@dataclass
class _Trainable:
    """The projector with its optimizer and schedule, and the checkpoint that holds all three with the loss history."""

    projector: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    path: Path
    recipe_key: str
    meta: dict  # order seed, steps per epoch, process count: what the checkpoint records besides the state

    def restore(self, work: Path, ctx) -> tuple[int, list[float]]:
        """Step and loss history of the last checkpoint (0, [] without one); refuses another recipe's checkpoint."""
        if not self.path.is_file():
            return 0, []
        state = torch.load(self.path, map_location="cpu", weights_only=True)
        if state.get("recipe_key") != self.recipe_key:
            raise InputError(f"{work} holds a checkpoint of a different training recipe; use a fresh run folder")
        self.projector.load_state_dict(state["projector"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        ctx.log(f"resumed from step {int(state['step'])}")
        return int(state["step"]), list(state["losses"])

    def save(self, step: int, losses: list[float], main: bool, accelerator) -> None:
        if main:
            with atomic_path(self.path) as tmp:
                torch.save({
                    "recipe_key": self.recipe_key, "projector": self.projector.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "rng": torch.get_rng_state(), "step": step, "losses": losses, **self.meta,
                }, tmp)
        accelerator.wait_for_everyone()


class _ImageHashes:
    """Image file hashes, computed lazily: hashing a large dataset up front would read every image."""

    def __init__(self, pairs: list) -> None:
        self.pairs, self.known = pairs, {}

    def __call__(self, i: int) -> str:
        if i not in self.known:
            self.known[i] = hash_file(self.pairs[i].image)
        return self.known[i]


def _global_batch_loss(frozen: _Frozen, model, accelerator, ctx, batch: list[list[int]], feats_of, n_tokens: int,
                       prefix: list[int], micro: int) -> tuple[float, bool]:
    """Forward and backward of this rank's share of one global batch; the global loss and whether to stop."""
    world, device = accelerator.num_processes, accelerator.device
    local = distributed.shard(batch, accelerator.process_index, world)
    starts = list(range(0, len(local), micro))
    batch_loss, stop = 0.0, False
    for k, start in enumerate(starts):
        idx = local[start : start + micro]
        feats, caps = feats_of(idx)
        sync = contextlib.nullcontext() if world == 1 or k == len(starts) - 1 else accelerator.no_sync(model)
        with sync:
            with accelerator.autocast():
                inputs, mask, labels = build_inputs(frozen.llm, prefix, model(feats), caps)
                picked, _ = caption_logprobs(frozen.llm, inputs, mask, labels, len(prefix) + feats.shape[1])
            loss = -picked.sum() / n_tokens
            # DDP averages gradients over ranks; each rank's loss is its share of the global sum.
            (loss * world if world > 1 else loss).backward()
        batch_loss += float(loss.detach())
    if world > 1:
        if not starts:  # an empty shard (batch smaller than the world) still joins the gradient all-reduce
            (model(torch.zeros(1, 1, frozen.encoder.embed_dim, device=device)).sum() * 0.0).backward()
        # One all-reduce per step: the global loss and the main rank's view of a cancel request.
        flag = 1.0 if accelerator.is_main_process and ctx.cancelled() else 0.0
        summed = accelerator.reduce(torch.tensor([batch_loss, flag], device=device, dtype=torch.float64), "sum").tolist()
        batch_loss, stop = summed[0], summed[1] > 0
    return batch_loss, stop


def run_loop(params: dict, ctx, accelerator) -> dict:
    """The training loop of one process (one rank of a data-parallel group); writes checkpoints on the main rank."""
    p = resolve_params(params)
    work = Path(p.get("run_dir") or ctx.work_dir)
    main, world = accelerator.is_main_process, accelerator.num_processes
    if main:
        work.mkdir(parents=True, exist_ok=True)
        if p.get("fresh"):
            (work / "checkpoint.pt").unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    pairs = load_pairs(p["data"], p["images"])
    if p["max_samples"]:
        pairs = pairs[: int(p["max_samples"])]
    frozen = _load_frozen(p, ctx, accelerator)

    torch.manual_seed(int(p["seed"]))
    projector = build_projector(frozen.encoder.embed_dim, frozen.hidden, p["projector_type"]).to(accelerator.device)
    optimizer = torch.optim.AdamW(projector.parameters(), lr=float(p["lr"]), weight_decay=float(p["weight_decay"]))
    n, batch = len(pairs), int(p["batch_size"])
    steps_per_epoch, total, warmup = _schedule(n, p)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))
    trainable = _Trainable(projector, optimizer, scheduler, work / "checkpoint.pt",
                           hash_obj([CODE_VERSION, {k: v for k, v in p.items() if k not in EXECUTION_KEYS}, n]),
                           {"order_seed": int(p["seed"]), "steps_per_epoch": steps_per_epoch, "num_processes": world})
    step, losses = trainable.restore(work, ctx)
    # Single process: the projector comes back as is. Several: DDP, which averages gradients over ranks.
    model = accelerator.prepare_model(projector, device_placement=True)

    prefix = prefix_ids(frozen.tokenizer)
    cap_ids = [caption_ids(frozen.tokenizer, pair.caption)[: int(p["max_caption_tokens"])] for pair in pairs]
    image_hash = _ImageHashes(pairs)

    def feats_of(idx: list[int]) -> tuple[torch.Tensor, list[list[int]]]:
        feats = frozen.cache.tokens([pairs[i].image for i in idx], [image_hash(i) for i in idx])
        return feats.to(accelerator.device), [cap_ids[i] for i in idx]

    started, samples = time.perf_counter(), 0
    ctx.progress(step, total, f"step {step}/{total}")
    while step < total:
        epoch, within = divmod(step, steps_per_epoch)
        batch_idx = _order(n, int(p["seed"]), epoch)[within * batch : (within + 1) * batch]
        optimizer.zero_grad(set_to_none=True)
        batch_loss, stop = _global_batch_loss(frozen, model, accelerator, ctx, batch_idx, feats_of,
                                              sum(len(cap_ids[i]) for i in batch_idx), prefix, int(p["micro_batch_size"]))
        optimizer.step()
        scheduler.step()
        step += 1
        samples += len(batch_idx)
        losses.append(batch_loss)
        ctx.metric("loss", step, batch_loss)
        ctx.progress(step, total, f"step {step}/{total} loss {batch_loss:.4f}")
        if step % int(p["checkpoint_every"]) == 0 or step == total:
            trainable.save(step, losses, main, accelerator)
        if stop if world > 1 else ctx.cancelled():
            trainable.save(step, losses, main, accelerator)
            ctx.check_cancelled()
    elapsed = time.perf_counter() - started
    if main:
        save_projector(projector, work / "projector.safetensors")
    accelerator.wait_for_everyone()
    return _loop_result(p, work, frozen, accelerator, step, total, losses, n,
                        samples / elapsed if elapsed > 0 and samples else None)


def _loop_result(p: dict, work: Path, frozen: _Frozen, accelerator, step: int, total: int, losses: list[float], n: int,
                 samples_per_s: float | None) -> dict:
    return {
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "steps": step,
        "total_steps": total,
        "losses": losses,
        "run_dir": str(work),
        "encoder": p["encoder"],
        "encoder_hash": frozen.encoder.weights_hash(),
        "in_dim": int(frozen.encoder.embed_dim),
        "hidden": frozen.hidden,
        "llm": p["llm"],
        "n_pairs": n,
        "num_processes": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "gradient_checkpointing": bool(p["gradient_checkpointing"]),
        "samples_per_s": samples_per_s,
        "feature_cache": {"hits": frozen.cache.hits, "misses": frozen.cache.misses},
        "demo": bool(p.get("demo")),
        "note": "smoke-scale demo run, not a result" if p.get("demo") else "",
    }


def finalize(p: dict, result: dict) -> dict:
    """Store the run folder's projector under ``<home>/projectors/<sha>`` and record it (main process only)."""
    out = Path(result["run_dir"]) / "projector.safetensors"
    sha = hash_file(out)
    final = config.subdir("projectors") / f"{sha}.safetensors"
    if not final.exists():  # atomic: a task killed mid-copy must not leave a torn file under the final name
        with atomic_path(final) as tmp:
            tmp.write_bytes(out.read_bytes())
    records.record_projector(p["encoder"], p["llm"], result["in_dim"], result["hidden"], str(final),
                             "trained" + (" (demo)" if p.get("demo") else ""), sha)
    return {**result, "checkpoint": str(final), "projector_sha": sha, "llm_hash": llm_fingerprint(p["llm"])}
