"""Issue 9 regressions: wrong answers with exit 0 and internal errors become one clear line naming file, field, value."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from engine.cli import main
from engine.errors import InputError

PAPER = "setting,A,C,mme\nS1,1,2,30\nS2,2,3,40\nS3,3,1,60\n"


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(code: int, err: str) -> None:
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err


# --- alignment score ------------------------------------------------------------------------------


def _dump(folder, tensors) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i, t in enumerate(tensors, start=1):
        torch.save(t, folder / f"tensor_{i}.pt")
    return str(folder)


def _brute_force_a(target: list[torch.Tensor], ref: list[torch.Tensor]) -> float:
    """Per image: mean over target tokens of max cosine to any reference token; mean over images (double loops)."""
    per_image = []
    for t, r in zip(target, ref, strict=True):
        best = []
        for u in t.double():
            best.append(max(float(u @ v / (u.norm() * v.norm())) for v in r.double()))
        per_image.append(sum(best) / len(best))
    return sum(per_image) / len(per_image)


def test_alignment_score_chunk_must_be_positive(isolated_home, tmp_path, capsys):
    gen = torch.Generator().manual_seed(0)
    target = [torch.randn(5, 4, generator=gen) for _ in range(2)]
    ref = [torch.randn(3, 4, generator=gen) for _ in range(2)]
    t, r = _dump(tmp_path / "t", target), _dump(tmp_path / "clip", ref)
    code, out, _ = _cli(capsys, "alignment", "score", "--target", t, "--references", r, "--chunk", "2", "--format", "json")
    assert code == 0 and math.isclose(json.loads(out)["A"], _brute_force_a(target, ref), rel_tol=1e-5)
    for chunk in ("-1", "0"):
        code, _, err = _cli(capsys, "alignment", "score", "--target", t, "--references", r, "--chunk", chunk)
        _one_line_error(code, err)
        assert f"got {chunk}" in err


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_alignment_score_refuses_non_finite_dumps(isolated_home, tmp_path, capsys, bad):
    target = [torch.ones(4, 3), torch.ones(4, 3)]
    target[1][2, 1] = bad
    t, r = _dump(tmp_path / "t", target), _dump(tmp_path / "clip", [torch.ones(2, 3)] * 2)
    code, out, err = _cli(capsys, "alignment", "score", "--target", t, "--references", r, "--format", "json")
    _one_line_error(code, err)
    assert "tensor_2.pt" in err and "non-finite" in err and out == ""


def test_alignment_score_empty_tensor_and_empty_file(isolated_home, tmp_path, capsys):
    t = _dump(tmp_path / "t", [torch.zeros(0, 8)])
    r = _dump(tmp_path / "clip", [torch.ones(2, 8)])
    code, _, err = _cli(capsys, "alignment", "score", "--target", t, "--references", r)
    _one_line_error(code, err)
    assert "tensor_1.pt" in err and "(0, 8)" in err
    (tmp_path / "t" / "tensor_1.pt").write_bytes(b"")
    code, _, err = _cli(capsys, "alignment", "score", "--target", t, "--references", r)
    _one_line_error(code, err)
    assert "tensor_1.pt" in err


# --- studies -------------------------------------------------------------------------------------


def test_setting_named_with_a_hash_is_kept():
    from engine.study import parse_study_file

    study = parse_study_file(("# source: export\n" + PAPER + "#2 best,4,5,70\n").encode(), name="h")
    assert study.setting_names == ["S1", "S2", "S3", "#2 best"]
    assert study.wide_scores().loc["#2 best", "mme"] == 70


def _json_study(**override) -> bytes:
    settings = [{"setting": f"S{i}", "A": float(i), "C": float(3 * i % 4)} for i in range(1, 5)]
    long = [{"setting": f"S{i}", "benchmark": "mme", "A": float(i), "C": float(3 * i % 4), "score": 10.0 * i} for i in range(1, 5)]
    for key, value in override.items():
        table, index, field = key.split("__")
        (settings if table == "settings" else long)[int(index)][field] = value
    return json.dumps({"kind": "law-explorer-study", "version": 1, "name": "j", "settings": settings, "long": long}).encode()


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"long__1__A": "abc"}, r"long\[1\] field 'A': 'abc' is not a number"),
        ({"long__2__score": True}, r"long\[2\] field 'score': 'True' is not a number"),
        ({"settings__0__C": "2"}, r"settings\[0\] field 'C': '2' is not a number"),
        ({"long__0__score": 1e308}, r"long\[0\] field 'score': value 1e\+308 is out of range"),
        ({"long__3__A": -1e300}, r"long\[3\] field 'A': value -1e\+300 is out of range"),
        ({"long__0__benchmark": 5}, r"long\[0\] field 'benchmark': '5' is not a name"),
    ],
)
def test_json_study_values_are_strict(override, match):
    from engine.study import parse_study_file

    assert len(parse_study_file(_json_study(), name="ok").setting_names) == 4
    with pytest.raises(InputError, match=match):
        parse_study_file(_json_study(**override), name="bad")


def test_json_study_hostile_structure():
    from engine.study import parse_study_file

    deep = b'{"kind": "law-explorer-study", "settings": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InputError, match="nested too deeply"):
        parse_study_file(deep, name="d")
    huge = b'{"kind": "law-explorer-study", "settings": [' + b"9" * 5000 + b"]}"
    with pytest.raises(InputError, match="invalid JSON"):
        parse_study_file(huge, name="h")
    with pytest.raises(InputError, match="must be a list of objects"):
        parse_study_file(b'{"kind": "law-explorer-study", "settings": 3, "long": []}', name="s")


def test_csv_huge_values_are_refused_before_the_fit():
    from engine.study import parse_study_file

    with pytest.raises(InputError, match=r"column 'mme', row 3 \(setting 'S2'\): value '1e308' is out of range"):
        parse_study_file(PAPER.replace("40", "1e308").encode(), name="x")
    with pytest.raises(InputError, match=r"column 'A', row 2 .*non-numeric"):
        parse_study_file(PAPER.replace("S1,1,", "S1," + "9" * 400 + "x,").encode(), name="x")


def test_law_fit_of_a_study_file_with_huge_values_is_one_line(tmp_path, capsys):
    path = tmp_path / "s.csv"
    path.write_text(PAPER.replace("40", "1e308"))
    code, _, err = _cli(capsys, "law", "fit", "--study", str(path))
    _one_line_error(code, err)
    assert "1e308" in err


# --- PCK -----------------------------------------------------------------------------------------


def _pair(**override) -> dict:
    pair = {"category": "cat", "pred_kps": [[10, 10], [50, 50]], "gt_kps": [[11, 10], [80, 80]],
            "visible": [True, True], "trg_bndbox": [0, 0, 100, 50], "trg_imsize": [120, 90]}
    return pair | override


def test_pck_matches_a_hand_computed_case():
    from engine.correspondence.pck import pck_from_predictions

    # errors 1 and ~42.4; bbox length 100: alpha 0.05 -> 5 px (1 of 2 correct), alpha 0.5 -> 50 px (2 of 2)
    pck = pck_from_predictions([_pair()], alphas=[0.05, 0.5])
    assert list(pck["per_image"].values()) == [0.5, 1.0]
    assert list(pck_from_predictions([_pair(visible=[1, 0])], alphas=[0.05])["per_image"].values()) == [1.0]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"visible": ["no", "no"]}, r"visible must be a list of true/false, got \"\['no', 'no'\]\""),
        ({"visible": "yes"}, "visible must be a list of true/false"),
        ({"trg_bndbox": "abcd"}, "trg_bndbox must be a list of numbers, got 'abcd'"),
        ({"trg_bndbox": 7}, "trg_bndbox must be"),
        ({"trg_bndbox": ["0", "0", "9", "9"]}, "trg_bndbox must hold only numbers"),
        ({"pred_kps": [[10**400, 1], [2, 3]]}, "pred_kps must hold only numbers"),
    ],
)
def test_pck_hostile_records(override, match):
    from engine.correspondence.pck import pck_from_predictions

    with pytest.raises(InputError, match=match):
        pck_from_predictions([_pair(**override)])


@pytest.mark.parametrize("alphas", ["-1", "nan", "inf", "0.1,nan", "a,b", "1.5", ""])
def test_pck_cli_alphas(tmp_path, capsys, alphas):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"pairs": [_pair()]}))
    code, _, err = _cli(capsys, "correspondence", "pck", "--predictions", str(path), f"--alphas={alphas}")
    _one_line_error(code, err)
    assert "alpha" in err


def test_pck_cli_names_the_file_and_the_field(tmp_path, capsys):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"pairs": [_pair(), _pair(visible=["no", "no"])]}))
    code, _, err = _cli(capsys, "correspondence", "pck", "--predictions", str(path))
    _one_line_error(code, err)
    assert str(path) in err and "pair 1: visible" in err and "'no'" in err
    path.write_text('{"pairs": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code, _, err = _cli(capsys, "correspondence", "pck", "--predictions", str(path))
    _one_line_error(code, err)
    assert "nested too deeply" in err


def test_numbers_helper_oracle():
    from engine.correspondence.pck import _numbers

    assert np.array_equal(_numbers([[1, 2.5]], "x", 0), np.array([[1.0, 2.5]]))


# --- internal errors that are now one clear line ---------------------------------------------------


@pytest.mark.parametrize(("device", "match"), [("garbage", "unknown device 'garbage'"), ("meta", "unsupported device"),
                                                ("cuda:99", "cuda:99")])
def test_device_names_are_checked(capsys, device, match):
    if device == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    code, _, err = _cli(capsys, "encoders", "probe", "pixels-8", "--device", device)
    _one_line_error(code, err)
    assert match in err


def test_cuda_without_a_gpu_is_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = _cli(capsys, "correspondence", "evaluate", "--dataset", "builtin", "--encoder", "pixels-8", "--device", "cuda")
    _one_line_error(code, err)
    assert "no CUDA GPU" in err


def test_dataset_images_bomb_and_zero_size(tmp_path):
    from PIL import Image

    from engine.correspondence.datasets import read_rgb

    bomb = tmp_path / "bomb.png"
    Image.new("1", (12_000, 12_000)).save(bomb)  # 144 Mpx, a few KB on disk: over PIL's limit
    with pytest.raises(InputError, match=r"bomb\.png is too large to decode safely"):
        read_rgb(bomb)
    zero = tmp_path / "zero.png"
    Image.new("RGB", (4, 4)).save(zero)
    data = bytearray(zero.read_bytes())
    data[16:20] = (0).to_bytes(4, "big")  # IHDR width = 0
    zero.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"zero\.png"):
        read_rgb(zero)


def test_spair_zero_image_size_is_named(tmp_path):
    from engine.correspondence.datasets import open_dataset
    from engine.correspondence.synthetic import write_synthetic_spair

    root = write_synthetic_spair(tmp_path / "SPair", n_categories=1, images_per_category=2, n_pairs=2, size_range=(32, 40))
    victim = sorted((root / "PairAnnotation" / "test").glob("*.json"))[0]
    data = json.loads(victim.read_text())
    data["trg_imsize"] = [0, 0, 3]
    victim.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"trg_imsize \[0, 0\] is not a positive image size"):
        open_dataset(f"spair:{root}").pairs("test")


def test_feature_cache_env_is_checked(monkeypatch):
    from engine import config

    monkeypatch.setenv("LAW_EXPLORER_FEATURE_CACHE_GB", "abc")
    with pytest.raises(InputError, match="LAW_EXPLORER_FEATURE_CACHE_GB='abc' is not a number"):
        config.feature_cache_limit_bytes()
    monkeypatch.setenv("LAW_EXPLORER_FEATURE_CACHE_GB", "0.5")
    assert config.feature_cache_limit_bytes() == 2**29


def test_garbage_store_file_names_the_file_and_the_fix(tmp_path, monkeypatch, capsys):
    db = tmp_path / "law.duckdb"
    db.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("LAW_EXPLORER_DB", str(db))
    code, _, err = _cli(capsys, "study", "list")
    _one_line_error(code, err)
    assert str(db) in err and "move the file away" in err


def test_broken_pipe_is_one_line(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = os.environ | {"LAW_EXPLORER_HOME": str(tmp_path)}
    env.pop("LAW_EXPLORER_DEBUG", None)
    # ~2 MB of JSON: far more than a pipe buffer, so the write after the reader leaves must fail
    proc = subprocess.Popen([sys.executable, "-m", "engine", "law", "surface", "--study", "paper-v3", "--benchmark", "mme",
                             "--n", "300", "--format", "json"],
                            cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # like `| head -c 10`
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 2
    assert err.count("\n") == 1 and "pipe" in err and "Traceback" not in err and "internal error" not in err, err


def test_empty_state_dict_upload_is_one_line(isolated_home, tmp_path, capsys):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    code, _, err = _cli(capsys, "encoders", "upload", str(empty), "--kind", "state-dict", "--arch", "efficientnet-lite0-random")
    _one_line_error(code, err)
    assert "empty.pt" in err


# --- denial of service ---------------------------------------------------------------------------


def test_oversized_study_files_are_refused_by_row_count(monkeypatch):
    from engine.study import io as study_io
    from engine.study import parse_study_file

    monkeypatch.setattr(study_io, "MAX_ROWS", 50)
    rows = "".join(f"s{i},{i},{i % 7},{i % 3}\n" for i in range(51))
    with pytest.raises(InputError, match="51 rows; a study holds at most 50"):
        parse_study_file(("setting,A,C,mme\n" + rows).encode(), name="big")
    settings = [{"setting": f"s{i}", "A": i, "C": i % 7} for i in range(51)]
    payload = json.dumps({"kind": "law-explorer-study", "settings": settings, "long": []}).encode()
    with pytest.raises(InputError, match="51 rows; a study holds at most 50"):
        parse_study_file(payload, name="big")
    ok = parse_study_file(("setting,A,C,mme\n" + "".join(f"s{i},{i},{i % 7},{i % 3}\n" for i in range(50))).encode(), name="ok")
    assert len(ok.setting_names) == 50 and ok.wide_scores().loc["s49", "mme"] == 49 % 3


def test_duplicate_settings_found_in_a_large_study():
    from engine.study import parse_study_file

    rows = [f"s{i},{i},{i % 7},{i % 3}" for i in range(5000)]
    rows[4999] = "s17,1,2,3"
    with pytest.raises(InputError, match="duplicate setting 's17'"):
        parse_study_file(("setting,A,C,mme\n" + "\n".join(rows)).encode(), name="dup")
