"""Benchmark the alignment engine: A-v1 at paper scale (100 images x 576 tokens x 4096 dims, two references)
and projector-training throughput of the offline demo. Prints a small report; no assertions.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_alignment.py [--images 100] [--device cpu|cuda] [--skip-train] [--stage1 4096:32]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pooled(seed: int, n_images: int, tokens: int, dim: int, pool: int = 4):
    """Yield n_images bf16 [tokens, dim] tensors cycling over a small pool (dump-like, bounded memory)."""
    gen = torch.Generator().manual_seed(seed)
    items = [torch.randn(tokens, dim, generator=gen).to(torch.bfloat16) for _ in range(pool)]
    for i in range(n_images):
        yield items[i % pool]


def bench_a_v1(n_images: int, device: str | None) -> None:
    from engine.alignment.scores import a_v1

    tokens, dim = 576, 4096
    print(f"A-v1: {n_images} images x {tokens} tokens x {dim} dims (bf16 dumps), 2 references, device={device or 'cpu'}, threads={torch.get_num_threads()}")
    a_v1(pooled(0, 2, tokens, dim), {"warm-up": pooled(1, 2, tokens, dim)}, device=device)
    for chunk in (128, 1024):
        rss0 = peak_rss_mb()
        t0 = time.perf_counter()
        result = a_v1(
            pooled(0, n_images, tokens, dim),
            {"clip224": pooled(1, n_images, 256, dim), "clip336": pooled(2, n_images, tokens, dim)},
            chunk=chunk, device=device,
        )
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        gflop = 2 * n_images * tokens * (256 + tokens) * dim / 1e9
        print(f"  chunk={chunk:5d}: {dt:6.2f} s  ({n_images / dt:6.1f} images/s, {gflop / dt:6.1f} GFLOP/s)  "
              f"peak RSS {peak_rss_mb():.0f} MB (+{peak_rss_mb() - rss0:.0f} MB)  A={result['A']:.4f}")


def bench_train(steps: int) -> None:
    from engine.alignment.jobctx import LocalContext
    from engine.alignment.train import run_job

    params = {"demo": True, "max_steps": steps}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cold = run_job(params, LocalContext(f"{tmp}/cold"))
        t1 = time.perf_counter()
        warm = run_job(params, LocalContext(f"{tmp}/warm"))
        t2 = time.perf_counter()
    print(f"projector training (demo, encoder {cold['encoder']}, {cold['n_pairs']} pairs, batch 16, {steps} steps):")
    print(f"  first run : {t1 - t0:6.2f} s wall, {cold['samples_per_s']:.1f} samples/s in the loop, feature cache misses {cold['feature_cache']['misses']}")
    print(f"  second run: {t2 - t1:6.2f} s wall, {warm['samples_per_s']:.1f} samples/s in the loop, feature cache hits {warm['feature_cache']['hits']}")
    print(f"  loss {warm['loss_first']:.3f} -> {warm['loss_last']:.3f} (smoke-scale demo, not a result)")


def bench_stage1_step(hidden: int, layers: int, device: str, micro: int = 16, steps: int = 5) -> None:
    """Time one stage-1 step (projector fwd/bwd through a frozen random-init Llama) at LLaVA-1.5 shapes:
    576 encoder tokens of width 1024 (CLIP-L/14@336), 40-token captions, vocab 32000. Encoder cost excluded."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.alignment.projector import build_projector
    from engine.alignment.sequence import build_inputs, caption_logprobs

    use_bf16 = device == "cuda"
    cfg = LlamaConfig(vocab_size=32000, hidden_size=hidden, intermediate_size=int(hidden * 2.6875), num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // 128), num_key_value_heads=max(1, hidden // 128))
    with torch.device(device):
        llm = LlamaForCausalLM(cfg).to(torch.bfloat16 if use_bf16 else torch.float32).eval()
        projector = build_projector(1024, hidden)
    llm.requires_grad_(False)
    opt = torch.optim.AdamW(projector.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(micro, 576, 1024, generator=gen).to(device)
    caps = [torch.randint(3, 32000, (40,), generator=gen).tolist() for _ in range(micro)]

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=use_bf16):
            inputs, mask, labels = build_inputs(llm, [1], projector(feats), caps)
            picked, valid = caption_logprobs(llm, inputs, mask, labels, 1 + feats.shape[1])
        loss = -picked.sum() / valid.sum()
        loss.backward()
        opt.step()
        return float(loss.detach())

    step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    params = sum(p.numel() for p in llm.parameters()) / 1e9
    mem = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""
    print(f"stage-1 step, frozen random Llama {params:.2f}B params (hidden {hidden}, {layers} layers), micro-batch {micro} x 617 tokens, "
          f"{device}{' bf16' if use_bf16 else ' fp32'}: {dt * 1000:.0f} ms/step = {micro / dt:.1f} samples/s{mem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--device", default=None)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--stage1", default=None, metavar="HIDDEN:LAYERS", help="also time a stage-1 step, e.g. 4096:32 (7B) or 4096:32:8 (micro-batch 8)")
    args = parser.parse_args()
    bench_a_v1(args.images, args.device)
    if not args.skip_train:
        bench_train(args.train_steps)
    if args.stage1:
        hidden, layers, *micro = (int(v) for v in args.stage1.split(":"))
        bench_stage1_step(hidden, layers, args.device or "cpu", micro=micro[0] if micro else 16)


if __name__ == "__main__":
    main()
