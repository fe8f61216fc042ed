"""Benchmark accelerate projector training: demo throughput at 1 vs N processes, and the memory / time cost
of gradient checkpointing the frozen LLM for one stage-1 step. Prints a small report; no assertions.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_align_accelerate.py [--processes 2] [--llm 512:8] [--micro 4]
    (on a GPU box: --device cuda --llm 4096:32 --micro 16 gives the LLaVA-1.5 7B stage-1 shape)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def bench_demo(processes: int, steps: int) -> None:
    from engine.alignment.jobctx import LocalContext
    from engine.alignment.train import run_job

    params = {"demo": True, "encoder": "alignment-pixel-patches", "batch_size": 16, "micro_batch_size": 8, "max_steps": steps,
              "max_samples": 16 * steps, "device": "cpu"}
    run_job({**params, "max_steps": 1}, LocalContext(Path(tempfile.mkdtemp())))  # builds demo data, LLM, feature cache
    for n in sorted({1, processes}):
        start = time.perf_counter()
        result = run_job({**params, "num_processes": n}, LocalContext(Path(tempfile.mkdtemp())))
        wall = time.perf_counter() - start
        print(f"demo CPU, {n} process(es): {steps} steps in {wall:.1f} s wall (incl. start-up), "
              f"loop {result['samples_per_s']:.1f} samples/s, loss {result['loss_first']:.4f} -> {result['loss_last']:.4f}")


def bench_checkpointing(shape: str, micro: int, device: str) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine.alignment.projector import build_projector
    from engine.alignment.sequence import build_inputs, caption_logprobs
    from engine.alignment.train import _enable_gradient_checkpointing

    hidden, layers = (int(v) for v in shape.split(":"))
    cfg = LlamaConfig(vocab_size=32000, hidden_size=hidden, intermediate_size=hidden * 11 // 4, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // 128), num_key_value_heads=max(1, hidden // 128))
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    for checkpointing in (False, True):
        torch.manual_seed(0)
        llm = LlamaForCausalLM(cfg).to(device=device, dtype=dtype).eval()
        for q in llm.parameters():
            q.requires_grad_(False)
        if checkpointing:
            _enable_gradient_checkpointing(llm)
        proj = build_projector(1024, hidden).to(device)
        feats = torch.randn(micro, 576, 1024, device=device)
        caps = [list(range(5, 45))] * micro
        saved = [0]

        def pack(t, saved=saved):
            saved[0] += t.numel() * t.element_size()
            return t

        times = []
        for _ in range(3):
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            saved[0] = 0
            start = time.perf_counter()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                inputs, mask, labels = build_inputs(llm, [1], proj(feats), caps)
                picked, _ = caption_logprobs(llm, inputs, mask, labels, 577)
            (-picked.sum()).backward()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        peak = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""
        print(f"Llama {hidden}x{layers} ({dtype}), micro-batch {micro} x 617 tokens on {device}, checkpointing={checkpointing}: "
              f"{min(times) * 1000:.0f} ms/step, autograd-saved activations {saved[0] / 2**20:.0f} MiB{peak}")
        del llm, proj


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--llm", default="512:8", help="hidden:layers of a random Llama for the checkpointing step")
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-demo", action="store_true")
    args = parser.parse_args()
    if not args.skip_demo:
        bench_demo(args.processes, args.steps)
    bench_checkpointing(args.llm, args.micro, args.device)


if __name__ == "__main__":
    main()
