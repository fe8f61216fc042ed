"""Every CLI command, fed a table of hostile inputs: exit 2, exactly one ``error:`` line on stderr, no internal error.

The commands are enumerated from the parser itself (``engine.cli.common.COMMANDS``, filled by ``leaf`` while the
argparse tree is built), so a new command without rows here fails ``test_every_command_has_hostile_rows``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import build_parser, main
from engine.cli.common import COMMANDS

GARBAGE_DB = "GARBAGE_DB"  # a row whose env points LAW_EXPLORER_DB at a file that is not a database

# command -> rows; a row is the argv after the command words, or (argv, GARBAGE_DB).
# Placeholders: {junk} a garbage file, {empty} an empty file, {missing} a path that does not exist,
# {dir} an empty folder, {deep} deeply nested JSON, {nan_dump} a dump folder with a NaN, {tmp} a scratch folder.
ROWS: dict[str, list] = {
    "alignment dump": [
        ["--encoder", "pixels-8", "--projector", "{missing}", "--images", "{dir}", "--out", "{tmp}/out"],
        ["--encoder", "pixels-8", "--projector", "{junk}", "--images", "{missing}", "--out", "{tmp}/out2"],
        ["--encoder", "pixels-8", "--projector", "{junk}", "--images", "{dir}", "--out", "{tmp}/out3", "--n", "-1"],
    ],
    "alignment import-projector": [
        ["{junk}", "--encoder", "pixels-8", "--llm", "{missing}"],
        ["{missing}", "--encoder", "pixels-8", "--llm", "{missing}"],
        ["{empty}", "--encoder", "nope-encoder", "--llm", "{dir}"],
    ],
    "alignment list": [["--definition", "v9"], ([], GARBAGE_DB)],
    "alignment loglik": [["--encoder", "pixels-8"], ["--averaging", "bogus"], ["--n", "abc"], ["--demo", "--n", "0"]],
    "alignment score": [
        ["--target", "{nan_dump}", "--references", "{nan_dump}"],
        ["--target", "{dir}", "--references", "{dir}"],
        ["--target", "{missing}", "--references", "{missing}"],
        ["--target", "{nan_dump}", "--references", "{nan_dump}", "--chunk", "0"],
        ["--target", "{nan_dump}", "--references", "{nan_dump}", "--chunk", "-1"],
    ],
    "alignment train-projector": [[], ["--device", "tpu"], ["--encoder", "pixels-8"], ["--lr", "abc"],
                                  ["--demo", "--max-steps", "0"], ["--demo", "--batch-size", "0"],
                                  ["--demo", "--micro-batch-size", "-2"], ["--demo", "--num-processes", "0"]],
    "correspondence attach": [["--result", "nope", "--study", "paper-v3", "--setting", "x"], ["--result", "1"]],
    "correspondence datasets": [["--bogus"]],
    "correspondence evaluate": [
        ["--dataset", "builtin", "--encoder", "pixels-8", "--device", "garbage"],
        ["--dataset", "spair:{missing}", "--encoder", "pixels-8"],
        ["--dataset", "spair:{dir}", "--encoder", "pixels-8"],
        ["--dataset", "nope:/x", "--encoder", "pixels-8"],
        ["--dataset", "builtin", "--encoder", "no-such-encoder"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--split", "garbage"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--protocol", "{deep}"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--precision", "fp8"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--backend", "ray", "--ray-address", "127.0.0.1:9"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--backend", "ray", "--ray-address", "bad address"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--backend", "ray", "--ray-address", "host:99999"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--backend", "ray", "--device", "cuda:3"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--ray-address", "127.0.0.1:9"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--backend", "spark"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--batch-size", "0"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--workers", "-1"],
        ["--dataset", "builtin", "--encoder", "pixels-8", "--limit", "0"],
    ],
    "correspondence pck": [
        ["--predictions", "{deep}"],
        ["--predictions", "{junk}"],
        ["--predictions", "{missing}"],
        ["--predictions", "{bad_visible}"],
        ["--predictions", "{bad_visible}", "--alphas", "a,b"],
        ["--predictions", "{bad_visible}", "--alphas=-1,nan,inf"],
    ],
    "correspondence protocols": [["--format", "xml"]],
    "correspondence results": [([], GARBAGE_DB), ["--bogus"]],
    "encoders delete": [["pixels-8"], ["no-such-upload"]],
    "encoders list": [([], GARBAGE_DB), ["--offline-only", "yes"]],
    "encoders probe": [["pixels-8", "--device", "garbage"], ["no-such-encoder"]],
    "encoders show": [["CLIP-244"], ([""], None)],
    "encoders upload": [
        ["{junk}", "--kind", "state-dict", "--arch", "efficientnet-lite0-random"],
        ["{empty}", "--kind", "state-dict", "--arch", "efficientnet-lite0-random"],
        ["{junk}", "--kind", "torchscript"],
        ["{junk}", "--kind", "hf-zip"],
        ["{missing}", "--kind", "hf-zip"],
        ["{junk}", "--kind", "state-dict"],
        ["{junk}", "--kind", "open-clip"],
    ],
    "jobs cancel": [["nope"], ["nope", "--wait", "abc"]],
    "jobs forget": [["nope"]],
    "jobs list": [["--status", "bogus"], ["--status"]],
    "jobs logs": [["nope"], ["nope", "--tail", "x"]],
    "jobs resume": [["nope"]],
    "jobs show": [["nope"], ["../../etc/passwd"]],
    "jobs submit-demo": [["--n", "abc"], ["--sleep", "soon"], ["--n", "-1"], ["--n", "3", "--sleep", "nan"]],
    "jobs wait": [["nope"], ["nope", "--timeout", "x"]],
    "jobs worker": [["nope"]],
    "law fit": [["--study", "{junk}"], ["--study", "no-such-study"], ["--study", "paper-v3", "--random-trials", "0"],
                ["--study", "{deep}"]],
    "law evaluate": [["--study", "{junk}"], ["--study", "no-such-study"], ["--study", "{deep}"],
                     ["--study", "paper-v3", "--model", "lasso"], ["--study", "paper-v3", "--level", "0"],
                     ["--study", "paper-v3", "--level", "1.5"], ["--study", "paper-v3", "--level", "nan"],
                     ["--study", "paper-v3", "--level", "abc"], ["--study", "{empty}"]],
    "law predict": [["--study", "paper-v3", "--a", "abc", "--c", "1"], ["--study", "paper-v3", "--a", "nan", "--c", "1"],
                    ["--study", "paper-v3", "--a", "1", "--c", "inf"], ["--study", "paper-v3", "--a", "1e308", "--c", "1e308"],
                    ["--study", "paper-v3", "--a", "mme=1", "--c", "1"], ["--study", "paper-v3", "--a", ",=", "--c", "1"],
                    ["--study", "paper-v3", "--a", "gqa=1", "--c", "1"], ["--study", "paper-v3", "--a", "1", "--c", "1",
                                                                          "--model", "x"],
                    ["--study", "paper-v3", "--a", "1", "--c", "1", "--level", "1"], ["--study", "{junk}", "--a", "1", "--c", "1"]],
    "law surface": [["--study", "paper-v3", "--benchmark", "gqa"], ["--study", "paper-v3", "--benchmark", "mme", "--n", "0"],
                    ["--study", "paper-v3", "--benchmark", "mme", "--n", "-5"]],
    "pipeline add": [["--setting", "x", "--A", "nan", "--C", "1"], ["--setting", "x", "--A", "1", "--C", "inf"],
                     ["--setting", "x", "--A", "1e308", "--C", "1"],
                     ["--setting", "x", "--A", "1", "--C", "2", "--meta", "novalue"]],
    "pipeline launch": [["--encoder", "no-such-encoder"], ["--encoder", "pixels-8", "--dataset", "nope:/x"]],
    "pipeline place": [["--A", "nan", "--C", "1"], ["--A", "1", "--C", "1", "--study", "no-such-study"],
                       ["--A", "1", "--C", "1", "--model", "lasso"], ["--A", "1", "--C", "1", "--level", "2"]],
    "pipeline plan": [["--encoder", "no-such-encoder"], ["--encoder", "pixels-8", "--study", "no-such-study"]],
    "pipeline status": [["--encoder", "no-such-encoder"], ["--encoder", "pixels-8", "--a-definition", "v7"]],
    "policy compare": [["--study", "paper-v3", "--budgets", "a,b"], ["--study", "paper-v3", "--budgets", "99"],
                       ["--study", "no-such-study"], ["--study", "paper-v3", "--trials", "0"]],
    "policy cost": [["--budget", "abc"], ["--llm-params", "lots"], ["--llm-params", "nan"], ["--encoder-width", "-5"],
                    ["--stage1-gpu-hours", "inf"]],
    "policy curve": [["--study", "paper-v3", "--budgets", "a,b"], ["--study", "no-such-study"]],
    "policy recommend": [["--study", "paper-v3", "--benchmark", "mme", "--finetuned", "CLIP336=abc"],
                         ["--study", "paper-v3", "--benchmark", "gqa"]],
    "policy simulate": [["--study", "paper-v3", "--trials", "0"], ["--study", "paper-v3", "--benchmark", "gqa"],
                        ["--study", "paper-v3", "--metric", "hit"], ["--study", "paper-v3", "--strategy", "bandit"],
                        ["--study", "paper-v3", "--strategy", "uncertainty", "--law-model", "bogus"],
                        ["--study", "paper-v3", "--strategy", "uncertainty", "--level", "nan"],
                        ["--study", "paper-v3", "--level", "x"]],
    "sweep cancel": [["nope"], ["20260101-000000-000000-deadbeef"], ["x", "--wait", "abc"]],
    "sweep run": [
        ["--encoders", ",", "--dataset", "builtin"],
        ["--encoders", "no-such-encoder", "--dataset", "builtin"],
        ["--encoders", "pixels-8", "--dataset", "spair:{missing}"],
        ["--encoders", "pixels-8", "--dataset", "builtin", "--limit", "0"],
        ["--encoders", "pixels-8", "--dataset", "builtin", "--study", "no-such-study"],
        ["--encoders", "pixels-8", "--dataset", "builtin", "--protocol", "{deep}"],
        ["--encoders", "pixels-8", "--dataset", "builtin", "--device", "garbage"],
        ["--encoders", "pixels-8", "--dataset", "builtin", "--backend", "ray", "--ray-address", "127.0.0.1:9"],
        ["--encoders", "pixels-8", "--dataset", "builtin", "--ray-address", "127.0.0.1:9"],
        ["--encoders", "pixels-8", "--dataset", "builtin", "--timeout", "abc"],
        ["--encoders", "pixels-8", "--dataset", "builtin", "--with-a", "demo"],
        ["--encoders", "pixels-8", "--dataset", "builtin", "--with-a", "paper", "--study", "paper-v3"],
        ["--encoders", "pixels-8", "--dataset", "builtin", "--with-a", "demo", "--study", "paper-v3", "--gpus-per-run", "0"],
    ],
    "sweep status": [["nope"], ["20260101-000000-000000-deadbeef"]],
    "study add-lmms-eval": [["--study", "paper-v3", "--setting", "x", "{deep}"],
                            ["--study", "no-such-study", "--setting", "x", "{junk}"]],
    "study copy": [["no-such-study", "new"], ["paper-v3", "../bad name"]],
    "study delete": [["paper-v3"], ["no-such-study"]],
    "study export": [["no-such-study"], ["paper-v3", "--out", "{dir}"], ["paper-v3", "--to", "xlsx"]],
    "study groups": [["no-such-study"], ["paper-v3", "--set", "mme=ocr"], ["paper-v3", "--set", "mme"],
                     ["paper-v3", "--set", "../x=vision"]],
    "study import": [["{deep}", "--name", "x"], ["{junk}", "--name", "x"], ["{empty}", "--name", "x"],
                     ["{missing}", "--name", "x"], ["{junk}", "--name", "../x"],
                     ["{missing}", "--name", "x", "--group", "mme"], ["{missing}", "--name", "x", "--group", "a..b=vision"]],
    "study list": [([], GARBAGE_DB), ["--bogus"]],
    "study show": [["no-such-study"], ["{junk}"]],
}


def _all_commands() -> list[str]:
    build_parser()
    return sorted(COMMANDS)


def test_every_command_has_hostile_rows():
    missing = [c for c in _all_commands() if not ROWS.get(c)]
    assert missing == [], f"add hostile rows for {missing}"
    assert sorted(ROWS) == _all_commands()  # no rows for commands that no longer exist


def _cases() -> list[tuple[str, list[str], str | None]]:
    out = []
    for command in _all_commands():
        for row in ROWS.get(command, []):
            argv, env = row if isinstance(row, tuple) else (row, None)
            out.append((command, argv, env))
        out.append((command, ["--format", "yaml"], None))  # a usage error for every command too
    return out


@pytest.fixture
def places(tmp_path) -> dict[str, str]:
    import torch

    (tmp_path / "junk.bin").write_bytes(b"\x00junk, neither JSON nor a checkpoint\xff" * 10)
    (tmp_path / "empty.bin").write_bytes(b"")
    (tmp_path / "dir").mkdir()
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "nan").mkdir()
    torch.save(torch.full((2, 4), float("nan")), tmp_path / "nan" / "tensor_1.pt")
    pair = {"pred_kps": [[1, 2]], "gt_kps": [[1, 2]], "visible": ["no"], "trg_bndbox": [0, 0, 9, 9]}
    (tmp_path / "bad_visible.json").write_text(json.dumps({"pairs": [pair]}))
    (tmp_path / "garbage.duckdb").write_bytes(b"not a database" * 100)
    return {"junk": str(tmp_path / "junk.bin"), "empty": str(tmp_path / "empty.bin"), "missing": str(tmp_path / "missing"),
            "dir": str(tmp_path / "dir"), "deep": str(tmp_path / "deep.json"), "nan_dump": str(tmp_path / "nan"),
            "bad_visible": str(tmp_path / "bad_visible.json"), "tmp": str(tmp_path), "db": str(tmp_path / "garbage.duckdb")}


@pytest.mark.parametrize(("command", "argv", "env"), _cases(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_hostile_input_is_one_clear_line(isolated_home, places, monkeypatch, capsys, command, argv, env):
    monkeypatch.delenv("LAW_EXPLORER_DEBUG", raising=False)  # as a user runs it
    if env == GARBAGE_DB:
        monkeypatch.setenv("LAW_EXPLORER_DB", places["db"])
    args = [*command.split(), *(a.format(**places) for a in argv)]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, f"{args}: exit {code}: {err}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{args}: {err!r}"
    assert "internal error" not in err and "Traceback" not in err, err
    assert Path(places["missing"]).exists() is False  # nothing was created where nothing should be
