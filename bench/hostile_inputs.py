"""A hostile-input run over the CLI: uploads, studies, datasets, dumps, predictions, options and environment.

Usage: ``python bench/hostile_inputs.py [--root TREE] [--only SUBSTRING] [-v]``. ``--root`` picks the project tree
whose ``engine`` is exercised (e.g. an older commit unpacked with ``git archive <sha> | tar -x -C /tmp/orig``), so
the same cases can be counted before and after a change.

Each case runs ``engine.cli.main(argv)`` in this process (stdout/stderr captured, 60 s alarm). A case expecting a
refusal is handled when it exits 2 with exactly one stderr line starting ``error:``, no ``internal error``, no
traceback, the message matching the case's pattern (when it has one) and within its time limit. A case expecting a
result is handled when it exits 0 and its output check passes (an independent oracle: brute force, hand values).
Prints one line per mishandled case and the count.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str = "refuse"  # refuse | ok
    pattern: str | None = None  # refusal message must match (re.search, case-insensitive)
    check: Callable[[str], bool] | None = None  # on stdout, for "ok"
    post: Callable[[], bool] | None = None  # extra state check after the run
    env: dict[str, str] = field(default_factory=dict)
    limit_s: float = 60.0


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_case(case: Case) -> tuple[bool, str]:
    from engine.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in case.env}
    os.environ.update(case.env)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(case.limit_s) + 1)
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(case.argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except _Timeout:
                return False, f"no answer within {case.limit_s:.0f} s"
            except BaseException as exc:
                return False, f"escaped {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
    finally:
        signal.alarm(0)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - t0
    stderr, stdout = err.getvalue(), out.getvalue()
    lines = [line for line in stderr.splitlines() if line.strip()]
    if seconds > case.limit_s:
        return False, f"took {seconds:.1f} s (limit {case.limit_s:.0f} s)"
    if case.expect == "ok":
        if code != 0:
            return False, f"exit {code}: {stderr.strip()[:160]}"
        if case.check is not None and not case.check(stdout):
            return False, f"wrong output: {stdout.strip()[:160]}"
    else:
        if code != 2:
            return False, f"exit {code} (expected 2): {(stderr or stdout).strip()[:160]}"
        if len(lines) != 1 or not lines[0].startswith("error:"):
            return False, f"{len(lines)} stderr lines: {' | '.join(lines)[:160]}"
        if "internal error" in stderr or "Traceback" in stderr:
            return False, lines[0][:160]
        if case.pattern and not re.search(case.pattern, lines[0], re.I):
            return False, f"message lacks /{case.pattern}/: {lines[0][:160]}"
    if case.post is not None and not case.post():
        return False, "state check failed"
    return True, ""


# --- fixtures ------------------------------------------------------------------------------------


def _w(path: Path, data: bytes | str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


PAPER = "setting,A,C,mme\nS1,1,2,30\nS2,2,3,40\nS3,3,1,60\n"


META = dict.fromkeys(["llm", "projector", "recipe", "a_method", "c_method", "source", "notes"], "")


def _json_study(settings=None, long=None, **top) -> str:
    settings = settings if settings is not None else [
        {"setting": f"S{i}", "A": float(i), "C": float(3 * i % 4)} | META for i in range(1, 5)]
    long = long if long is not None else [
        {"setting": f"S{i}", "benchmark": "mme", "A": float(i), "C": float(3 * i % 4), "score": 10.0 * i} for i in range(1, 5)]
    return json.dumps({"kind": "law-explorer-study", "version": 1, "name": "j", "settings": settings, "long": long} | top)


def _json_override(table: str, index: int, key: str, value) -> str:
    settings = [{"setting": f"S{i}", "A": float(i), "C": float(3 * i % 4)} | META for i in range(1, 5)]
    long = [{"setting": f"S{i}", "benchmark": "mme", "A": float(i), "C": float(3 * i % 4), "score": 10.0 * i} for i in range(1, 5)]
    (settings if table == "settings" else long)[index][key] = value
    return _json_study(settings, long)


def _base36(i: int) -> str:
    digits, out = "0123456789abcdefghijklmnopqrstuvwxyz", ""
    while True:
        i, r = divmod(i, 36)
        out = digits[r] + out
        if not i:
            return out


def _pair(**override) -> dict:
    return {"category": "cat", "pred_kps": [[10, 10], [50, 50]], "gt_kps": [[11, 10], [80, 80]], "visible": [True, True],
            "trg_bndbox": [0, 0, 100, 50], "trg_imsize": [120, 90]} | override


def _lying_zip(path: Path, real: bytes, declared: int) -> str:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("config.json", "{}")
        zf.writestr("weights.safetensors", real)
    data = bytearray(path.read_bytes())
    for sig, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        start = 0
        while (pos := data.find(sig, start)) >= 0:
            n = struct.unpack("<H", data[pos + name_len_at:pos + name_len_at + 2])[0]
            if data[pos + name_at:pos + name_at + n] == b"weights.safetensors":
                data[pos + size_at:pos + size_at + 4] = struct.pack("<I", declared)
            start = pos + 4
    path.write_bytes(bytes(data))
    return str(path)


def _zip(path: Path, members: list[tuple[str, bytes]], symlink: str | None = None) -> str:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return str(path)


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def build_cases(tmp: Path) -> list[Case]:
    import numpy as np
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    cases: list[Case] = []

    def study(name: str, data: bytes | str, pattern: str | None = None, suffix: str = ".csv", **kw) -> None:
        path = _w(tmp / "studies" / f"{len(cases)}{suffix}", data)
        cases.append(Case(f"study: {name}", ["study", "import", path, "--name", f"h{len(cases)}"], pattern=pattern, **kw))

    # --- studies (CSV and JSON) ---
    study("empty file", b"", "empty")
    study("whitespace only", b"  \n \n", "empty")
    study("binary", b"\x89PNG\r\n\x1a\n\x00\x00", "binary")
    study("not UTF-8", b"\xff\xfe\xfa,abc\n1,2\n", "UTF-8")
    study("unknown columns", "foo,bar\n1,2\n", "unrecognised")
    study("no benchmark columns", "setting,A,C\nS1,1,2\n")
    # any benchmark name is a benchmark (issue 7); a non-benchmark column holds text, a path is no name
    study("unknown column with text", PAPER.replace("mme", "colour").replace(",40", ",red"), "colour")
    study("text in A", PAPER.replace("S2,2,", "S2,abc,"), r"'A'.*'abc'")
    study("missing C", PAPER.replace("S2,2,3,", "S2,2,,"), "missing")
    study("duplicate setting", PAPER.replace("S3,", "S1,"), "duplicate")
    study("inf score", PAPER.replace("40", "inf"), "finite")
    study("too few settings", "setting,A,C,mme\nS1,1,2,3\nS2,2,1,4\n", "too few")
    study("constant A", PAPER.replace("S2,2,", "S2,1,").replace("S3,3,", "S3,1,"), "constant")
    study("1e308 score (CSV)", PAPER.replace("40", "1e308"), "1e308")
    study("400-digit number (CSV)", PAPER.replace("S1,1,", "S1," + "9" * 400 + ","), r"'A'")
    study("tidy: different C per setting", "setting,benchmark,A,C,score\nS1,mme,1,2,3\nS1,ok_vqa,1,5,3\n", "different C")
    study("tidy: duplicate row", "setting,benchmark,A,C,score\nS1,mme,1,2,3\nS1,mme,1,2,4\n", "duplicate")
    study("tidy: path as benchmark", "setting,benchmark,A,C,score\nS1,../gqa,1,2,3\n", r"\.\./gqa")
    study("tidy: bad group", "setting,benchmark,A,C,score,group\nS1,gqa,1,2,3,../x\n", r"group")
    study("released: missing _average", "model,mme,corres\nS1,3,4\n", "mme_average")
    study("header only", "setting,A,C,mme\n", "no data rows")
    study("ragged rows", "setting,A,C,mme\nS1,1,2,3,4,5,6\nS2,2,3\n")
    study("over 10 MiB", "setting,A,C,mme\n" + "S,1,2,3\n" * 1_500_000, "10 MiB")
    rows = "".join(f"{_base36(i)},{i % 7},{i % 5},\n" for i in range(1_000_000))
    study("1e6 rows under 10 MiB (< 10 s)", "setting,A,C,mme\n" + rows, limit_s=10.0)
    study("JSON: not a study", '{"kind": "other"}', "not a Law Explorer study", suffix=".json")
    study("JSON: settings A is text", _json_override("settings", 1, "A", "abc"), r"'A'.*abc", suffix=".json")
    study("JSON: long A is text", _json_override("long", 1, "A", "abc"), r"'A'", suffix=".json")
    study("JSON: score is true", _json_override("long", 2, "score", True), r"score.*True", suffix=".json")
    study("JSON: settings C is text", _json_override("settings", 0, "C", "2"), r"'C'.*'2'", suffix=".json")
    study("JSON: 1e308 score", _json_override("long", 0, "score", 1e308), "1e.308", suffix=".json")
    study("JSON: benchmark ../../etc", _json_override("long", 0, "benchmark", "../../etc"), r"\.\./\.\./etc", suffix=".json")
    study("JSON: deep nesting", '{"kind": "law-explorer-study", "settings": ' + "[" * 100_000 + "]" * 100_000 + "}", "nest",
          suffix=".json")
    study("JSON: 5000-digit integer", '{"kind": "law-explorer-study", "settings": [' + "9" * 5000 + "]}", suffix=".json")
    study("JSON: settings is a number", _json_study(settings=3), "settings", suffix=".json")
    study("JSON: long holds a string", _json_study(long=["x"]), "long", suffix=".json")
    study("JSON: setting name null", _json_override("settings", 0, "setting", None), "setting", suffix=".json")
    study("JSON: meta is a list", _json_study(meta=[1, 2]), "meta", suffix=".json")
    study("JSON: truncated", _json_study()[:50], "JSON", suffix=".json")
    cases.append(Case("study: file not found", ["study", "import", str(tmp / "nope.csv"), "--name", "x"], pattern="not found"))
    cases.append(Case("study: a folder as file", ["study", "import", str(tmp), "--name", "x"]))
    good = _w(tmp / "studies" / "good.csv", PAPER)
    cases.append(Case("study: name ../x", ["study", "import", good, "--name", "../x"], pattern="name"))
    cases.append(Case("study: name of 200 chars", ["study", "import", good, "--name", "n" * 200], pattern="name"))
    hash_csv = _w(tmp / "studies" / "hash.csv", "# source: export\n" + PAPER + "#2 best,4,5,70\n")
    cases.append(Case("study: setting '#2 best' kept", ["study", "import", hash_csv, "--name", "hashy", "--format", "json"],
                      expect="ok", check=lambda out: "#2 best" in json.loads(out)["settings"]))
    inj = _w(tmp / "studies" / "inj.csv", "setting,A,C,mme\n=cmd|' /C calc'!A0,1,2,3\n@S2,2,3,4\nS3,3,1,6\n")
    cases.append(Case("study: import formula-like names", ["study", "import", inj, "--name", "inj"], expect="ok"))
    cases.append(Case("study: CSV export escapes formulas", ["study", "export", "inj", "--to", "csv"], expect="ok",
                      check=lambda out: "\n=cmd" not in out and "\n@S2" not in out and "'=cmd" in out))
    cases.append(Case("study: export unknown study", ["study", "export", "no-such-study"], pattern="no-such-study"))
    cases.append(Case("study: delete bundled", ["study", "delete", "paper-v3"]))
    cases.append(Case("study: add-lmms-eval garbage", ["study", "add-lmms-eval", "--study", "inj", "--setting", "S3",
                                                        _w(tmp / "lmms.json", "[1, 2")]))

    # --- law / policy / pipeline on hostile values ---
    big = _w(tmp / "studies" / "big.csv", PAPER.replace("40", "1e308"))
    cases.append(Case("law fit: study file with 1e308", ["law", "fit", "--study", big], pattern="1e308"))
    cases.append(Case("law fit: --random-trials 0", ["law", "fit", "--study", "paper-v3", "--random-trials", "0"]))
    cases.append(Case("law fit: unknown study", ["law", "fit", "--study", "nope-study"]))
    cases.append(Case("law surface: unknown benchmark", ["law", "surface", "--study", "paper-v3", "--benchmark", "gqa"]))
    cases.append(Case("law surface: --n 0", ["law", "surface", "--study", "paper-v3", "--benchmark", "mme", "--n", "0"]))
    cases.append(Case("law surface: --n -5", ["law", "surface", "--study", "paper-v3", "--benchmark", "mme", "--n", "-5"]))
    cases.append(Case("pipeline place: A nan", ["pipeline", "place", "--A", "nan", "--C", "10"]))
    cases.append(Case("pipeline place: C inf", ["pipeline", "place", "--A", "-2", "--C", "inf"]))
    cases.append(Case("policy curve: budgets a,b", ["policy", "curve", "--study", "paper-v3", "--budgets", "a,b"]))
    cases.append(Case("policy simulate: trials 0", ["policy", "simulate", "--study", "paper-v3", "--trials", "0"]))
    cases.append(Case("policy simulate: budget 0", ["policy", "simulate", "--study", "paper-v3", "--budget", "0"]))
    cases.append(Case("policy recommend: score abc", ["policy", "recommend", "--study", "paper-v3", "--benchmark", "mme",
                                                      "--finetuned", "CLIP336=abc"]))
    cases.append(Case("policy cost: negative candidates", ["policy", "cost", "--n-candidates", "-1"]))
    cases.append(Case("policy cost: --llm-params nan", ["policy", "cost", "--llm-params", "nan"]))
    cases.append(Case("policy cost: --encoder-width -5", ["policy", "cost", "--encoder-width", "-5"]))
    cases.append(Case("jobs submit-demo: --n -1", ["jobs", "submit-demo", "--n", "-1", "--sleep", "0"]))
    cases.append(Case("jobs show: unknown id", ["jobs", "show", "nope"]))

    # --- embedding dumps (alignment score) ---
    gen = torch.Generator().manual_seed(0)
    target = [torch.randn(5, 4, generator=gen) for _ in range(2)]
    reference = [torch.randn(3, 4, generator=gen) for _ in range(2)]

    def dump(name: str, tensors: list, suffix: str = ".pt") -> str:
        folder = tmp / "dumps" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(tensors, start=1):
            if suffix == ".npy":
                np.save(folder / f"tensor_{i}.npy", t)
            else:
                torch.save(t, folder / f"tensor_{i}.pt")
        return str(folder)

    def brute(tg, rf) -> float:
        vals = []
        for t, r in zip(tg, rf, strict=True):
            vals.append(sum(max(float(u @ v / (u.norm() * v.norm())) for v in r.double()) for u in t.double()) / len(t))
        return sum(vals) / len(vals)

    ref = dump("clip", reference)
    tgt = dump("target", target)
    truth = brute(target, reference)

    def score(name: str, target_dir: str, *extra: str, **kw) -> None:
        cases.append(Case(f"dumps: {name}", ["alignment", "score", "--target", target_dir, "--references", ref, *extra], **kw))

    score("valid (brute-force oracle)", tgt, "--format", "json", expect="ok",
          check=lambda out: abs(json.loads(out)["A"] - truth) < 1e-5)
    score("--chunk -1", tgt, "--chunk", "-1", pattern="chunk")
    score("--chunk 0", tgt, "--chunk", "0", pattern="chunk")
    score("--chunk 1 (oracle)", tgt, "--chunk", "1", "--format", "json", expect="ok",
          check=lambda out: abs(json.loads(out)["A"] - truth) < 1e-5)
    nan_t = [target[0], target[1].clone()]
    nan_t[1][0, 0] = float("nan")
    score("NaN in a dump", dump("nan", nan_t), pattern="tensor_2")
    inf_t = [target[0].clone(), target[1]]
    inf_t[0][1, 1] = float("inf")
    score("inf in a dump", dump("inf", inf_t), pattern="tensor_1")
    score("[0, 8] tensor", dump("zero", [torch.zeros(0, 4), torch.zeros(0, 4)]), pattern="tensor_1")
    empty_dir = dump("emptyfile", target)
    _w(Path(empty_dir) / "tensor_2.pt", b"")
    score("empty .pt", empty_dir, pattern="tensor_2")
    garbage_dir = dump("garbage", target)
    _w(Path(garbage_dir) / "tensor_1.pt", b"garbage bytes, not a checkpoint")
    score("garbage .pt", garbage_dir, pattern="tensor_1")
    evil_dir = tmp / "dumps" / "evil"
    evil_dir.mkdir(parents=True)
    marker = tmp / "pwned"
    torch.save({"t": _Evil(str(marker))}, evil_dir / "tensor_1.pt")
    torch.save(target[1], evil_dir / "tensor_2.pt")
    score("pickle with code", str(evil_dir), pattern="tensor_1", post=lambda: not marker.exists())
    score("3-D tensor", dump("3d", [torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)]), pattern="shape")
    score("width mismatch", dump("wide", [torch.randn(5, 7), torch.randn(5, 7)]), pattern="width")
    score("missing folder", str(tmp / "dumps" / "none"), pattern="not found")
    score("fewer reference images", dump("three", [*target, target[0]]))
    score("--images 0", tgt, "--images", "0")
    score("--images 99", tgt, "--images", "99")
    gap = dump("gap", target)
    os.rename(Path(gap) / "tensor_2.pt", Path(gap) / "tensor_3.pt")
    score("numbering gap", gap, pattern="tensor_")
    score("text .npy", dump("text", [np.array([["a", "b"]]), np.array([["a", "b"]])], suffix=".npy"))
    score("complex .npy", dump("complex", [np.ones((2, 4), complex), np.ones((2, 4), complex)], suffix=".npy"))
    score("bool .npy", dump("bool", [np.ones((2, 4), bool), np.ones((2, 4), bool)], suffix=".npy"))
    score("--attach without colon", tgt, "--attach", "nocolon")
    cases.append(Case("dumps: empty --references", ["alignment", "score", "--target", tgt, "--references", ","]))

    # --- predictions (correspondence pck) ---
    def pck(name: str, payload: str | dict, *extra: str, **kw) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        path = _w(tmp / "preds" / f"{len(cases)}.json", text)
        cases.append(Case(f"predictions: {name}", ["correspondence", "pck", "--predictions", path, *extra], **kw))

    pck("valid (hand-computed)", {"pairs": [_pair()]}, "--alphas", "0.05,0.5", "--format", "json", expect="ok",
        check=lambda out: list(json.loads(out)["pck"]["per_image"].values()) == [0.5, 1.0])
    pck("visible ['no', 'no']", {"pairs": [_pair(visible=["no", "no"])]}, pattern="visible")
    pck("visible 'yes'", {"pairs": [_pair(visible="yes")]}, pattern="visible")
    for alphas in ("-1", "nan", "inf", "a,b", "", "0.1,,0.2", "2"):
        pck(f"--alphas={alphas!r}", {"pairs": [_pair()]}, f"--alphas={alphas}", pattern="alpha")
    pck("deep nesting", '{"pairs": ' + "[" * 100_000 + "]" * 100_000 + "}", pattern="nest")
    pck("5000-digit integer", '{"pairs": [{"pred_kps": ' + "9" * 5000 + "}]}")
    pck("1e400 coordinate", '{"pairs": [{"pred_kps": [[1e400, 1], [2, 3]], "gt_kps": [[1, 1], [2, 3]], "trg_bndbox": [0, 0, 9, 9]}]}',
        expect="ok")
    pck("bbox is a string", {"pairs": [_pair(trg_bndbox="abcd")]}, pattern="trg_bndbox")
    pck("bbox is a number", {"pairs": [_pair(trg_bndbox=7)]}, pattern="trg_bndbox")
    pck("bbox of strings", {"pairs": [_pair(trg_bndbox=["0", "0", "9", "9"])]}, pattern="trg_bndbox")
    pck("bbox of 3 numbers", {"pairs": [_pair(trg_bndbox=[0, 0, 9])]}, pattern="trg_bndbox")
    pck("zero-size bbox", {"pairs": [_pair(trg_bndbox=[5, 5, 5, 5])]}, pattern="normaliser")
    pck("huge int keypoint", {"pairs": [_pair(pred_kps=[[10**400, 1], [2, 3]])]}, pattern="pred_kps")
    pck("keypoints as text", {"pairs": [_pair(gt_kps="abc")]}, pattern="gt_kps")
    pck("pairs is not a list", {"pairs": 5}, pattern="pairs")
    pck("pair is not an object", {"pairs": [3]}, pattern="pair 0")
    pck("pred/gt count mismatch", {"pairs": [_pair(pred_kps=[[1, 2]])]}, pattern="pair 0")
    pck("3 coordinates", {"pairs": [_pair(pred_kps=[[1, 2, 3], [4, 5, 6]])]}, pattern="pred_kps")
    pck("image normaliser without imsize", {"pairs": [{k: v for k, v in _pair().items() if k != "trg_imsize"}]},
        "--normalizer", "image", pattern="trg_imsize")
    pck("not JSON", "{nope", pattern="JSON")
    cases.append(Case("predictions: missing file", ["correspondence", "pck", "--predictions", str(tmp / "none.json")]))

    # --- uploads ---
    from engine.encoders.registry import build_encoder

    torch.manual_seed(0)
    state = {k: v.clone().contiguous() for k, v in build_encoder("efficientnet-lite0-random").module.state_dict().items()}
    up = tmp / "uploads"
    up.mkdir()

    def upload(name: str, path: str, kind: str, *extra: str, **kw) -> None:
        cases.append(Case(f"uploads: {name}", ["encoders", "upload", path, "--kind", kind, *extra], **kw))

    arch = ("--arch", "efficientnet-lite0-random")
    upload("empty state dict", _w(up / "empty.pt", b""), "state-dict", *arch, pattern="empty.pt")
    upload("garbage state dict", _w(up / "junk.bin", b"junk" * 100), "state-dict", *arch, pattern="junk.bin")
    torch.save({"w": _Evil(str(marker))}, up / "evil.pt")
    upload("pickle with code", str(up / "evil.pt"), "state-dict", *arch, pattern="weights-only",
           post=lambda: not marker.exists())
    save_file({"x": torch.zeros(3)}, str(up / "wrong.safetensors"))
    upload("wrong keys", str(up / "wrong.safetensors"), "state-dict", *arch, pattern="missing keys")
    upload("unknown arch", str(up / "wrong.safetensors"), "state-dict", "--arch", "no-such-arch", pattern="no-such-arch")
    upload("state dict without --arch", str(up / "wrong.safetensors"), "state-dict", pattern="arch")
    upload("open-clip without --model-name", str(up / "wrong.safetensors"), "open-clip", pattern="model-name")
    upload("missing file", str(up / "none.pt"), "state-dict", *arch)
    sd = up / "ok.safetensors"
    save_file(state, str(sd))
    upload("valid state dict", str(sd), "state-dict", *arch, expect="ok")
    script = up / "script.pt"
    torch.jit.script(torch.nn.Conv2d(3, 4, kernel_size=8, stride=8)).save(str(script))
    upload("TorchScript (code, not data)", str(script), "torchscript", pattern="torchscript")
    upload("not a zip", _w(up / "bad.zip", b"not a zip"), "hf-zip", pattern="zip")
    upload("zip: ../ member", _zip(up / "trav.zip", [("config.json", b"{}"), ("../../escape.txt", b"x")]), "hf-zip",
           pattern=r"\.\.")
    upload("zip: absolute member", _zip(up / "abs.zip", [("config.json", b"{}"), ("/etc/passwd", b"x")]), "hf-zip",
           pattern="absolute")
    upload("zip: symlink member", _zip(up / "link.zip", [("config.json", b"{}")], symlink="link"), "hf-zip", pattern="link")
    upload("zip: no config.json", _zip(up / "nocfg.zip", [("a.txt", b"x")]), "hf-zip", pattern="config.json")
    upload("zip: two config.json", _zip(up / "two.zip", [("a/config.json", b"{}"), ("b/config.json", b"{}")]), "hf-zip",
           pattern="config.json")
    upload("zip: 40 x 1 MiB zeros (whole-archive ratio, before extraction)",
           _zip(up / "bomb.zip", [("config.json", b"{}")] + [(f"w{i}.bin", b"\0" * (1 << 20)) for i in range(40)]),
           "hf-zip", pattern="ratio")
    upload("zip: one 4 MiB zero member", _zip(up / "one.zip", [("config.json", b"{}"), ("big.bin", b"\0" * (4 << 20))]),
           "hf-zip", pattern="ratio")
    upload("zip: member shorter than declared", _lying_zip(up / "liar1.zip", os.urandom(1000), 5000), "hf-zip",
           pattern="weights.safetensors")
    upload("zip: member longer than declared", _lying_zip(up / "liar2.zip", os.urandom(1000), 10), "hf-zip",
           pattern="weights.safetensors")
    staging = Path(os.environ["LAW_EXPLORER_HOME"]) / "uploads" / ".staging-killed"

    def _make_stale() -> str:
        staging.mkdir(parents=True, exist_ok=True)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (staging / ".owner").write_text(f"{os.uname().nodename} {dead.pid}")
        (staging / "big.bin").write_bytes(b"\0" * 1000)
        return _w(up / "junk2.zip", b"junk")

    upload("killed upload's staging folder is swept", _make_stale(), "hf-zip", post=lambda: not staging.exists())

    # --- datasets (correspondence evaluate) ---
    from engine.correspondence.synthetic import write_synthetic_spair

    def spair(name: str) -> Path:
        return write_synthetic_spair(tmp / "spair" / name, n_categories=1, images_per_category=2, n_pairs=2, size_range=(32, 40))

    def evaluate(name: str, dataset: str, *extra: str, **kw) -> None:
        cases.append(Case(f"datasets: {name}", ["correspondence", "evaluate", "--dataset", dataset, "--encoder", "pixels-8",
                                                "--limit", "2", *extra], **kw))

    def first_pair(root: Path) -> Path:
        return sorted((root / "PairAnnotation" / "test").glob("*.json"))[0]

    evaluate("valid synthetic SPair", f"spair:{spair('ok')}", expect="ok")
    evaluate("missing folder", f"spair:{tmp / 'nope'}")
    (tmp / "spair" / "empty").mkdir(parents=True)
    evaluate("folder without JPEGImages", f"spair:{tmp / 'spair' / 'empty'}", pattern="JPEGImages")
    root = spair("layout")
    _w(tmp / "secret.json", first_pair(root).read_text())
    _w(root / "Layout" / "large" / "test.txt", "../../../../secret\n")
    evaluate("Layout stem with ../", f"spair:{root}", pattern="leaves")
    root = spair("badjson")
    _w(first_pair(root), "{nope")
    evaluate("malformed pair JSON", f"spair:{root}", pattern="JSON")
    root = spair("notobj")
    _w(first_pair(root), "[1, 2]")
    evaluate("pair JSON not an object", f"spair:{root}")
    for field_name, value, pattern in (("trg_imsize", [0, 0, 3], "trg_imsize"), ("src_bndbox", "abcd", "src_bndbox"),
                                       ("trg_bndbox", [5, 5, 1, 1], "trg_bndbox"), ("src_kps", [["a", "b"]], "malformed"),
                                       ("src_imname", "../../../../etc/passwd", "escapes")):
        root = spair(f"field-{field_name}")
        data = json.loads(first_pair(root).read_text())
        data[field_name] = value
        _w(first_pair(root), json.dumps(data))
        evaluate(f"pair {field_name} = {value!r}", f"spair:{root}", pattern=pattern)
    root = spair("bomb")
    data = json.loads(first_pair(root).read_text())
    bomb = root / "JPEGImages" / data["category"] / data["src_imname"]
    Image.new("1", (12_000, 12_000)).save(bomb, format="PNG")  # 144 Mpx in a few KB
    evaluate("PNG decompression bomb", f"spair:{root}", pattern="too large")
    root = spair("zerosize")
    data = json.loads(first_pair(root).read_text())
    zero = root / "JPEGImages" / data["category"] / data["src_imname"]
    Image.new("RGB", (4, 4)).save(zero, format="PNG")
    raw = bytearray(zero.read_bytes())
    raw[16:20] = (0).to_bytes(4, "big")
    zero.write_bytes(bytes(raw))
    evaluate("zero-size image", f"spair:{root}", pattern=data["src_imname"])
    root = spair("noimage")
    data = json.loads(first_pair(root).read_text())
    (root / "JPEGImages" / data["category"] / data["src_imname"]).unlink()
    evaluate("missing image", f"spair:{root}", pattern="missing")
    evaluate("unknown split", "builtin", "--split", "garbage", pattern="split")
    evaluate("--device garbage", "builtin", "--device", "garbage", pattern="garbage")
    if not torch.cuda.is_available():
        evaluate("--device cuda without a GPU", "builtin", "--device", "cuda", pattern="cuda")
    evaluate("unknown dataset spec", "nope:/x", pattern="nope")
    evaluate("protocol file missing", "builtin", "--protocol", str(tmp / "none.json"))
    evaluate("protocol with alpha nan", "builtin", "--protocol", _w(tmp / "proto.json", json.dumps(
        {"name": "p", "alphas": ["nan"]})))
    cases.append(Case("encoders probe: --device garbage", ["encoders", "probe", "pixels-8", "--device", "garbage"],
                      pattern="garbage"))
    cases.append(Case("encoders show: unknown", ["encoders", "show", "CLIP-244"], pattern="CLIP-244"))

    # --- environment ---
    evaluate("LAW_EXPLORER_FEATURE_CACHE_GB=abc", "builtin", pattern="LAW_EXPLORER_FEATURE_CACHE_GB",
             env={"LAW_EXPLORER_FEATURE_CACHE_GB": "abc"})
    upload("LAW_EXPLORER_UPLOAD_MAX_GB=abc", _zip(up / "env.zip", [("config.json", b"{}")]), "hf-zip",
           pattern="LAW_EXPLORER_UPLOAD_MAX_GB", env={"LAW_EXPLORER_UPLOAD_MAX_GB": "abc"})
    garbage_db = _w(tmp / "garbage.duckdb", b"not a database" * 100)
    cases.append(Case("env: garbage DuckDB file", ["study", "list"], pattern=re.escape(garbage_db),
                      env={"LAW_EXPLORER_DB": garbage_db}))
    cases.append(Case("cli: unknown command", ["lw"]))
    cases.append(Case("cli: missing required option", ["law", "fit"]))
    cases.append(Case("cli: bad choice", ["encoders", "upload", good, "--kind", "onnx"]))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent), help="project tree to exercise")
    parser.add_argument("--only", default=None, help="run the cases whose name contains this")
    parser.add_argument("-v", "--verbose", action="store_true", help="print handled cases too")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.root).resolve()))
    tmp = Path(tempfile.mkdtemp(prefix="hostile-"))
    os.environ["LAW_EXPLORER_HOME"] = str(tmp / "home")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.pop("LAW_EXPLORER_DEBUG", None)
    os.environ.pop("LAW_EXPLORER_DB", None)
    import engine

    assert Path(engine.__file__).resolve().is_relative_to(Path(args.root).resolve()), engine.__file__
    cases = build_cases(tmp)
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    bad = 0
    by_area: dict[str, list[int]] = {}
    for case in cases:
        ok, why = run_case(case)
        area = case.name.split(":")[0]
        by_area.setdefault(area, [0, 0])
        by_area[area][0] += 1
        if not ok:
            bad += 1
            by_area[area][1] += 1
            print(f"MISHANDLED  {case.name}: {why}", flush=True)
        elif args.verbose:
            print(f"ok          {case.name}", flush=True)
    print("by area (cases, mishandled): " + ", ".join(f"{a} {n}/{b}" for a, (n, b) in by_area.items()))
    print(f"{bad} of {len(cases)} cases mishandled ({args.root})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
