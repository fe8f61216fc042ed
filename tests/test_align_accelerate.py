"""Projector training through accelerate: single-process CPU path = a plain PyTorch loop, 2-process gloo run
resumes in one process, gradient checkpointing of the frozen LLM."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.alignment.data import load_pairs
from engine.alignment.features import TokenCache, build_encoder
from engine.alignment.jobctx import LocalContext
from engine.alignment.llm import caption_ids, load_llm, prefix_ids
from engine.alignment.projector import build_projector
from engine.alignment.sequence import build_inputs, caption_logprobs
from engine.alignment.train import _enable_gradient_checkpointing, _order, lr_factor, resolve_params, run_job
from engine.hashing import hash_file

DEMO = {"demo": True, "encoder": "alignment-pixel-patches", "batch_size": 8, "micro_batch_size": 4, "checkpoint_every": 2, "max_samples": 64}


def _plain_pytorch_losses(params: dict) -> list[float]:
    """The training loop as it was before accelerate (one process, no wrappers), as an independent reference."""
    p = resolve_params(params)
    pairs = load_pairs(p["data"], p["images"])[: p["max_samples"]]
    llm, tok = load_llm(p["llm"])
    encoder = build_encoder(p["encoder"])
    cache = TokenCache(encoder, batch_size=p["micro_batch_size"])
    torch.manual_seed(p["seed"])
    proj = build_projector(encoder.embed_dim, llm.get_input_embeddings().weight.shape[1])
    opt = torch.optim.AdamW(proj.parameters(), lr=p["lr"], weight_decay=0.0)
    batch, micro, n = p["batch_size"], p["micro_batch_size"], len(pairs)
    per_epoch = math.ceil(n / batch)
    total = min(per_epoch * p["epochs"], p["max_steps"])
    warmup = max(1, math.ceil(p["warmup_ratio"] * total))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup))
    prefix, caps = prefix_ids(tok), [caption_ids(tok, q.caption) for q in pairs]
    losses = []
    for step in range(total):
        epoch, within = divmod(step, per_epoch)
        idx_all = _order(n, p["seed"], epoch)[within * batch : (within + 1) * batch]
        n_tokens = sum(len(caps[i]) for i in idx_all)
        opt.zero_grad(set_to_none=True)
        step_loss = 0.0
        for start in range(0, len(idx_all), micro):
            idx = idx_all[start : start + micro]
            feats = cache.tokens([pairs[i].image for i in idx], [hash_file(pairs[i].image) for i in idx])
            inputs, mask, labels = build_inputs(llm, prefix, proj(feats), [caps[i] for i in idx])
            picked, _ = caption_logprobs(llm, inputs, mask, labels, len(prefix) + feats.shape[1])
            loss = -picked.sum() / n_tokens
            loss.backward()
            step_loss += float(loss.detach())
        opt.step()
        sched.step()
        losses.append(step_loss)
    return losses


def test_single_process_cpu_path_equals_plain_pytorch(tmp_path):
    params = {**DEMO, "max_steps": 3}
    result = run_job(params, LocalContext(tmp_path / "run"))
    assert result["num_processes"] == 1 and result["mixed_precision"] == "no"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the demo trains on one thread; same reductions -> same bits
    try:
        reference = _plain_pytorch_losses(params)
    finally:
        torch.set_num_threads(threads)
    assert result["losses"] == reference


def test_gradient_checkpointing_recomputes_and_keeps_gradients():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2)
    grads, saved = [], []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        llm = LlamaForCausalLM(cfg).eval()
        for q in llm.parameters():
            q.requires_grad_(False)
        if checkpointing:
            _enable_gradient_checkpointing(llm)
            assert not llm.model.layers[0].self_attn.training  # dropout-carrying submodules stay in eval
        x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(1), requires_grad=True)
        count = [0]

        def pack(t, count=count):
            count[0] += 1
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = llm(inputs_embeds=x).logits.log_softmax(-1)[..., 3].sum()
        out.backward()
        grads.append(x.grad.clone())
        saved.append(count[0])
    assert saved[1] < saved[0] / 2  # activations are recomputed in the backward, not stored
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_gradient_checkpointing_training_gives_same_losses(tmp_path):
    params = {**DEMO, "max_steps": 2}
    plain = run_job(params, LocalContext(tmp_path / "a"))
    checkpointed = run_job({**params, "gradient_checkpointing": True}, LocalContext(tmp_path / "b"))
    assert checkpointed["gradient_checkpointing"] is True
    assert np.allclose(plain["losses"], checkpointed["losses"], atol=1e-6)


class Killed(Exception):
    """Stands in for SIGKILL of the parent job: the ranks are terminated mid-run."""


def test_two_process_gloo_run_resumes_in_one_process(tmp_path):
    # 17 pairs, batch 8: every third step has a 1-pair batch, so one rank's shard is empty.
    params = {**DEMO, "max_samples": 17, "max_steps": 6}
    straight = run_job(params, LocalContext(tmp_path / "straight"))

    def kill_at_3(done, total, message):
        if done == 3:
            raise Killed

    ctx = LocalContext(tmp_path / "two", progress=kill_at_3)
    with pytest.raises(Killed):
        run_job({**params, "num_processes": 2}, ctx)
    state = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=True)
    assert state["num_processes"] == 2 and state["step"] in (2, 4)
    assert np.allclose(state["losses"], straight["losses"][: state["step"]], atol=1e-5)
    assert any("2 process(es)" in line for line in ctx.logs)

    resumed = run_job(params, LocalContext(tmp_path / "two"))
    assert resumed["steps"] == 6 and resumed["num_processes"] == 1
    assert np.allclose(resumed["losses"], straight["losses"], atol=1e-5)


def test_cli_under_torchrun_two_ranks_prints_one_report(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": repo}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "engine", "alignment",
           "train-projector", "--demo", "--encoder", "alignment-pixel-patches", "--max-steps", "2", "--batch-size", "8",
           "--micro-batch-size", "4", "--run-dir", str(tmp_path / "run"), "--format", "json"]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)  # exactly one JSON document: rank 1 prints nothing
    assert data["num_processes"] == 2 and data["steps"] == 2 and os.path.isfile(data["checkpoint"])


def test_cancel_reaches_every_rank_and_leaves_a_resumable_checkpoint(tmp_path):
    from engine.alignment.jobctx import JobCancelledLocal

    params = {**DEMO, "num_processes": 2, "checkpoint_every": 100}  # 16 steps; only the cancel writes a checkpoint
    with pytest.raises(JobCancelledLocal):
        run_job(params, LocalContext(tmp_path / "run", cancel_when=lambda done: done >= 2))
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert 2 <= state["step"] < 16 and len(state["losses"]) == state["step"]
    assert not (tmp_path / "run" / "cancel.request").exists()


def test_background_job_with_two_processes_relays_metrics(tmp_path):
    jobs = pytest.importorskip("engine.jobs")
    from engine.alignment.jobctx import submit

    job_id = submit("engine.alignment.train:run_job", {**DEMO, "max_steps": 2, "num_processes": 2, "run_dir": str(tmp_path / "bg")})
    record = jobs.wait(job_id, timeout=400)
    assert record.status == "done", record.error
    assert record.result["num_processes"] == 2 and os.path.isfile(record.result["checkpoint"])
    assert [m["value"] for m in record.metrics if m["name"] == "loss"] == pytest.approx(record.result["losses"])


def test_a_run_the_process_state_does_not_fit_trains_in_a_child_process(tmp_path):
    """accelerate fixes its state per process at the first Accelerator: after a bf16 one, a full-precision CPU run
    must not train under bf16 (nor fail): it trains in a child process, as it would in a fresh one."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    params = {**DEMO, "max_steps": 3}
    code = (
        "import json, sys\n"
        "from accelerate import Accelerator\n"
        "from engine.alignment.jobctx import LocalContext\n"
        "from engine.alignment.train import run_job\n"
        "Accelerator(cpu=True, mixed_precision='bf16')\n"
        f"result = run_job({params!r}, LocalContext(sys.argv[1]))\n"
        "print(json.dumps(result))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": repo}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "child")], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert child["mixed_precision"] == "no" and child["num_processes"] == 1 and os.path.isfile(child["checkpoint"])
    here = run_job(params, LocalContext(tmp_path / "here"))
    assert child["losses"] == pytest.approx(here["losses"], rel=1e-6)
