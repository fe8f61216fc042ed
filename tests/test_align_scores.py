"""A-v1: chunked max-cosine vs a direct loop, dtypes, dumps in the authors' layout / safetensors / npy, CLI contract."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.alignment.dumps import iter_dump, load_tensor
from engine.alignment.scores import a_v1, max_cosine_mean
from engine.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loop_reference(target: list[torch.Tensor], references: dict[str, list[torch.Tensor]]) -> dict:
    """The definition written out with Python loops over tokens (no chunking, no matmul)."""
    per_ref = {}
    for name, refs in references.items():
        image_scores = []
        for t, r in zip(target, refs, strict=True):
            t, r = t.double(), r.double()
            r_unit = [row / row.norm() for row in r]
            best = [max(float(torch.dot(row / row.norm(), ru)) for ru in r_unit) for row in t]
            image_scores.append(sum(best) / len(best))
        per_ref[name] = sum(image_scores) / len(image_scores)
    return {"A": sum(per_ref.values()) / len(per_ref), "per_reference": per_ref}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_a_v1_matches_loop_reference(dtype):
    gen = torch.Generator().manual_seed(1)
    target = [torch.randn(n, 24, generator=gen).to(dtype) for n in (7, 13, 5)]
    refs = {
        "clip224": [torch.randn(n, 24, generator=gen).to(dtype) for n in (4, 9, 16)],
        "clip336": [torch.randn(n, 24, generator=gen).to(dtype) for n in (11, 3, 6)],
    }
    expected = loop_reference(target, refs)
    result = a_v1(target, refs, chunk=3)
    assert result["n_images"] == 3
    assert result["A"] == pytest.approx(expected["A"], abs=1e-5)
    for name in refs:
        assert result["per_reference"][name] == pytest.approx(expected["per_reference"][name], abs=1e-5)
    assert a_v1(target, refs, chunk=1000)["A"] == pytest.approx(result["A"], abs=1e-6)


def test_a_v1_properties_and_errors():
    x = torch.randn(10, 8)
    assert max_cosine_mean(x, x) == pytest.approx(1.0, abs=1e-6)
    assert max_cosine_mean(x, torch.cat([x, -x])) == pytest.approx(1.0, abs=1e-6)
    assert max_cosine_mean(x[:3], -x[:3]) < 1.0
    with pytest.raises(InputError, match="widths differ"):
        a_v1([x], {"r": [torch.randn(4, 9)]})
    with pytest.raises(InputError, match="fewer images"):
        a_v1([x, x], {"r": [x]})
    with pytest.raises(InputError, match="more images"):
        a_v1([x], {"r": [x, x]})


def test_released_variant_skips_shape_mismatch():
    gen = torch.Generator().manual_seed(2)
    t = [torch.randn(6, 8, generator=gen), torch.randn(6, 8, generator=gen)]
    r = [torch.randn(6, 8, generator=gen), torch.randn(4, 8, generator=gen)]
    released = a_v1(t, {"clip336": r}, variant="released")
    assert released["skipped"] == {"clip336": 1}
    assert released["A"] == pytest.approx(max_cosine_mean(t[0], r[0]), abs=1e-6)
    clean = a_v1(t, {"clip336": r})
    assert clean["skipped"] == {"clip336": 0}
    assert clean["A"] == pytest.approx((max_cosine_mean(t[0], r[0]) + max_cosine_mean(t[1], r[1])) / 2, abs=1e-6)


def _write_dump(folder, tensors, fmt):
    folder.mkdir(parents=True)
    for i, t in enumerate(tensors, start=1):
        if fmt == "pt":
            torch.save(t, folder / f"tensor_{i}.pt")
        elif fmt == "safetensors":
            save_file({"embeddings": t.contiguous()}, str(folder / f"tensor_{i}.safetensors"))
        else:
            np.save(folder / f"tensor_{i}.npy", t.float().numpy())
    return folder


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "npy"])
def test_dump_formats_round_trip(tmp_path, fmt):
    gen = torch.Generator().manual_seed(3)
    tensors = [torch.randn(5 + i, 16, generator=gen).to(torch.bfloat16 if fmt != "npy" else torch.float32) for i in range(4)]
    folder = _write_dump(tmp_path / "dump", tensors, fmt)
    loaded = list(iter_dump(folder))
    assert len(loaded) == 4
    for a, b in zip(loaded, tensors, strict=True):
        assert torch.equal(a.float(), b.float())
    assert len(list(iter_dump(folder, 2))) == 2
    with pytest.raises(InputError, match="fewer than"):
        list(iter_dump(folder, 9))


def test_dump_gaps_and_hostile_pickle(tmp_path):
    folder = _write_dump(tmp_path / "gap", [torch.randn(3, 4)] * 3, "pt")
    (folder / "tensor_2.pt").unlink()
    with pytest.raises(InputError, match="missing"):
        list(iter_dump(folder))
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"x": Evil()}, tmp_path / "tensor_1.pt")
    with pytest.raises(InputError, match="cannot be read safely"):
        load_tensor(tmp_path / "tensor_1.pt")
    assert not marker.exists()


def _cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "engine", "alignment", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cli_score_contract(tmp_path):
    gen = torch.Generator().manual_seed(4)
    target = _write_dump(tmp_path / "setting", [torch.randn(9, 12, generator=gen).to(torch.bfloat16) for _ in range(3)], "pt")
    r1 = _write_dump(tmp_path / "clip224", [torch.randn(4, 12, generator=gen) for _ in range(3)], "safetensors")
    r2 = _write_dump(tmp_path / "clip336", [torch.randn(9, 12, generator=gen) for _ in range(3)], "npy")
    proc = _cli("score", "--target", str(target), "--references", f"{r1},{r2}", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    expected = a_v1(iter_dump(target), {"clip224": iter_dump(r1), "clip336": iter_dump(r2)})
    assert set(data) == {"A", "per_reference", "n_images"}
    assert data["n_images"] == 3
    assert data["A"] == pytest.approx(expected["A"], abs=1e-9)
    assert set(data["per_reference"]) == {"clip224", "clip336"}

    bad = _cli("score", "--target", str(target), "--references", str(r1), "--images", "7", "--format", "json")
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("error:")

    from engine.alignment.records import list_a_scores

    table = list_a_scores("v1")
    assert (table["a"] - data["A"]).abs().min() < 1e-9


def test_score_attaches_to_study(tmp_path, isolated_home):
    study_repo = pytest.importorskip("engine.study.repository")
    from engine.alignment.evaluate import score_dumps

    study_repo.copy_study("paper-v3", "align-attach")
    gen = torch.Generator().manual_seed(5)
    target = _write_dump(tmp_path / "new-encoder", [torch.randn(6, 8, generator=gen) for _ in range(2)], "pt")
    ref = _write_dump(tmp_path / "clip336", [torch.randn(5, 8, generator=gen) for _ in range(2)], "pt")
    result = score_dumps(target, [ref], attach="align-attach:new-encoder")
    study = study_repo.load_study("align-attach")
    row = study.settings.set_index("setting").loc["new-encoder"]
    assert row["A"] == pytest.approx(result["A"])
    assert row["a_method"].startswith("A-v1 clean") and result["record_id"] in row["recipe"]
    with pytest.raises(InputError, match="STUDY:SETTING"):
        score_dumps(target, [ref], attach="no-colon")
