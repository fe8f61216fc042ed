"""Projector training (demo loss falls, kill/cancel-and-resume is exact), A-v3 vs a hand computation, CLI contracts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.alignment.demo import build_word_tokenizer
from engine.alignment.features import PixelPatchEncoder, prepare
from engine.alignment.jobctx import JobCancelledLocal, LocalContext
from engine.alignment.loglik import a_v3_loglik
from engine.alignment.projector import build_projector
from engine.alignment.train import run_job

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = {"demo": True, "encoder": "alignment-pixel-patches", "batch_size": 8, "micro_batch_size": 4, "checkpoint_every": 2, "max_samples": 64}


class Killed(Exception):
    """Stands in for SIGKILL: raised from inside the loop, before the step's checkpoint is written."""


def test_demo_training_loss_falls(tmp_path):
    result = run_job({**DEMO, "max_steps": 8}, LocalContext(tmp_path / "run"))
    assert result["steps"] == 8 and len(result["losses"]) == 8
    assert np.mean(result["losses"][-3:]) < np.mean(result["losses"][:3])
    assert os.path.isfile(result["checkpoint"])


def test_kill_and_cancel_then_resume_continue_exactly(tmp_path):
    params = {**DEMO, "max_steps": 6}
    straight = run_job(params, LocalContext(tmp_path / "straight"))

    def kill_at_3(done, total, message):
        if done == 3:
            raise Killed

    with pytest.raises(Killed):
        run_job(params, LocalContext(tmp_path / "killed", progress=kill_at_3))
    state = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2  # step 3 was lost with the kill
    resumed = run_job(params, LocalContext(tmp_path / "killed"))
    assert resumed["steps"] == straight["steps"] == 6
    assert np.allclose(resumed["losses"], straight["losses"], atol=1e-5)

    with pytest.raises(JobCancelledLocal):
        run_job(params, LocalContext(tmp_path / "cancelled", cancel_when=lambda done: done == 3))
    assert torch.load(tmp_path / "cancelled" / "checkpoint.pt", weights_only=True)["step"] == 3
    again = run_job(params, LocalContext(tmp_path / "cancelled"))
    assert again["steps"] == 6 and np.allclose(again["losses"], straight["losses"], atol=1e-5)


def test_shared_jobs_run_inline_resumes_in_work_dir(tmp_path):
    jobs = pytest.importorskip("engine.jobs")
    params = {**DEMO, "max_steps": 2}
    first = jobs.run_inline("engine.alignment.train:run_job", params, work_dir=tmp_path / "w")
    assert first["steps"] == 2
    again = jobs.run_inline("engine.alignment.train:run_job", params, work_dir=tmp_path / "w")
    assert again["losses"] == first["losses"] and again["feature_cache"]["misses"] == 0


def _tiny_llm(vocab: int, hidden: int = 16):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2)
    return LlamaForCausalLM(cfg).eval()


def test_a_v3_equals_hand_computation():
    captions = ["a red circle above a blue square", "a cat", "a green triangle left of a yellow circle on grey"]
    tok = build_word_tokenizer(captions)
    llm = _tiny_llm(len(tok))
    enc = PixelPatchEncoder(input_size=16, patch=8)
    proj = build_projector(enc.embed_dim, 16)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (20, 24, 3), dtype=np.uint8) for _ in captions]
    pairs = list(zip(images, captions, strict=True))
    result = a_v3_loglik(enc, proj, llm, tok, pairs, n=10, seed=0, batch_size=2)

    all_lp, per_caption = [], []
    with torch.no_grad():
        for image, caption in pairs:
            ids = tok(caption, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            feats = enc.tokens(prepare([image], enc.preprocessing))
            emb = llm.get_input_embeddings()
            seq = torch.cat([emb(torch.tensor([[tok.bos_token_id]])), proj(feats), emb(torch.tensor([ids]))], dim=1)
            logits = llm(inputs_embeds=seq).logits[0].double()
            start = 1 + feats.shape[1]
            lp = []
            for k, token in enumerate(ids):
                row = logits[start + k - 1]
                lp.append(float(row[token] - torch.log(torch.exp(row - row.max()).sum()) - row.max()))
            all_lp += lp
            per_caption.append(sum(lp) / len(lp))
    assert result["n_images"] == 3 and result["n_tokens"] == len(all_lp)
    assert result["A"] == pytest.approx(sum(all_lp) / len(all_lp), abs=1e-5)
    assert result["A_per_caption_mean"] == pytest.approx(np.mean(per_caption), abs=1e-5)
    other = a_v3_loglik(enc, proj, llm, tok, pairs, n=2, seed=1, averaging="per_caption")
    assert other["n_images"] == 2 and other["A"] == other["A_per_caption_mean"]


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "engine", "alignment", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_cli_train_then_loglik_contract():
    train = _cli("train-projector", "--demo", "--encoder", "alignment-pixel-patches", "--max-steps", "3", "--format", "json")
    assert train.returncode == 0, train.stderr
    data = json.loads(train.stdout)
    assert {"loss_first", "loss_last", "steps", "checkpoint"} <= set(data) and data["steps"] == 3
    assert os.path.isfile(data["checkpoint"])
    lik = _cli("loglik", "--demo", "--encoder", "alignment-pixel-patches", "--projector", data["checkpoint"], "--n", "12", "--format", "json")
    assert lik.returncode == 0, lik.stderr
    out = json.loads(lik.stdout)
    assert out["n_images"] == 12 and out["A"] < 0
    missing = _cli("train-projector", "--encoder", "alignment-pixel-patches", "--format", "json")
    assert missing.returncode == 2 and missing.stderr.startswith("error:")

    from engine.alignment.records import list_a_scores

    table = list_a_scores("v3")
    assert len(table) >= 1 and json.loads(table.iloc[0]["recipe"])["projector"] == data["checkpoint"]


@pytest.mark.slow
def test_default_demo_encoder_trains(tmp_path):
    from engine.alignment.train import demo_encoder_name

    result = run_job({"demo": True, "max_steps": 2, "batch_size": 8, "micro_batch_size": 8}, LocalContext(tmp_path / "run"))
    assert result["encoder"] == demo_encoder_name() and result["steps"] == 2
    assert all(np.isfinite(result["losses"]))


@pytest.mark.slow
def test_background_job_trains_and_records_metrics(tmp_path):
    jobs = pytest.importorskip("engine.jobs")
    from engine.alignment.jobctx import submit

    params = {**DEMO, "max_steps": 2, "run_dir": str(tmp_path / "bg")}
    job_id = submit("engine.alignment.train:run_job", params, title="test projector")
    record = jobs.wait(job_id, timeout=400)
    assert record.status == "done", record.error
    assert record.result["steps"] == 2 and os.path.isfile(record.result["checkpoint"])
    assert (tmp_path / "bg" / "checkpoint.pt").is_file()
    losses = [m["value"] for m in record.metrics if m["name"] == "loss"]
    assert losses == pytest.approx(record.result["losses"])
