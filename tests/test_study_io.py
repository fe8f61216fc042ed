"""Study importers, lmms-eval results, the editor table and validation (every bad-input case)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.errors import InputError
from engine.study import (
    apply_lmms_eval,
    bundled_study,
    parse_study_file,
    scores_from_lmms_eval,
    study_from_editor,
    study_from_json,
    study_to_editor,
    study_to_json,
    validate_study,
)

PAPER_CSV = """setting,A_loglik,C_pck10,mmbench_en,mme
S1,-1.9,15.0,64.0,1500
S2,-2.5,20.0,55.0,1300
S3,-3.5,5.0,35.0,900
S4,-2.0,25.0,,1450
"""


def test_bundled_study_matches_reference(reference_dir):
    study = bundled_study()
    ref = pd.read_csv(reference_dir / "law_v3_paper_tables.csv").set_index("setting")
    assert study.setting_names == ref.index.tolist()
    assert study.benchmarks == list(ref.columns[2:])
    wide = study.wide_scores()
    np.testing.assert_array_equal(wide.to_numpy(), ref[study.benchmarks].to_numpy())
    np.testing.assert_array_equal(study.settings.set_index("setting")["A"], ref["A_loglik"])
    assert study.meta["llm"] == "Vicuna-7B v1.5" and study.a_kind == "shared"
    assert set(study.long.columns) == {"setting", "benchmark", "A", "C", "score"}
    assert study.table("mme").columns.tolist() == ["setting", "A", "C", "score"]


def test_paper_format_parses_missing_score_as_not_measured():
    study = parse_study_file(PAPER_CSV.encode(), name="p")
    assert study.meta["imported_format"] == "paper"
    assert np.isnan(study.wide_scores().loc["S4", "mmbench_en"])
    assert study.fit_ready("mmbench_en")["setting"].tolist() == ["S1", "S2", "S3"]


def test_tidy_format_shared_and_per_benchmark_a(tmp_path):
    rows = ["setting,benchmark,A,C,score,llm"]
    for i, (a, c) in enumerate([(-1.9, 15), (-2.5, 20), (-3.5, 5)]):
        rows += [f"S{i},mme,{a},{c},{1000 + 100 * i},vicuna", f"S{i},ok_vqa,{a},{c},{40 + i},vicuna"]
    path = tmp_path / "tidy.csv"
    path.write_text("\n".join(rows))
    study = parse_study_file(path, name="t")
    assert study.a_kind == "shared" and study.settings["llm"].tolist() == ["vicuna"] * 3
    per = "\n".join([*rows[:1], *(r.replace(",mme,-1.9,", ",mme,-1.8,") for r in rows[1:])])
    assert parse_study_file(per.encode(), name="t2", fmt="tidy").a_kind == "per_benchmark"


def test_released_format(reference_dir):
    study = parse_study_file(reference_dir / "law_v1_released_ablations.csv", name="v1")
    raw = pd.read_csv(reference_dir / "law_v1_released_ablations.csv")
    assert study.meta["imported_format"] == "released"
    np.testing.assert_allclose(study.wide_a()["vizwiz_vqa_val"], raw["vizwiz_vqa_val_average"])
    np.testing.assert_allclose(study.settings["C"], raw["corres"])


def test_json_round_trip_and_hash():
    study = bundled_study().with_setting("X", A=-2.0, C=10.0, scores={"mme": 1000.0}, notes="mine")
    back = parse_study_file(study_to_json(study).encode(), name="copy")
    assert back.content_hash() == study.content_hash()
    assert study_from_json(study_to_json(study)).name == study.name
    assert back.content_hash() != bundled_study().content_hash()


def test_with_setting_updates_and_adds():
    study = bundled_study()
    updated = study.with_setting("CLIP336", scores={"mme": 1600.0})
    assert updated.wide_scores().loc["CLIP336", "mme"] == 1600.0
    assert study.wide_scores().loc["CLIP336", "mme"] == 1502.7
    added = study.with_setting("New", C=12.0)
    assert added.setting_names[-1] == "New" and np.isnan(added.table("mme")["A"].iat[-1])
    with pytest.raises(InputError, match="metadata"):
        study.with_setting("New", color="red")
    with_gqa = study.with_setting("New", scores={"gqa": 50.0})
    assert with_gqa.benchmarks[-1] == "gqa" and with_gqa.group_of("gqa") == "vision"
    with pytest.raises(InputError, match=r"benchmark name '\.\./x' is not allowed"):
        study.with_setting("New", scores={"../x": 50.0})


def test_lmms_eval_results_mapping():
    results = {"results": {
        "mme": {"alias": "mme", "mme_perception_score,none": 1510.5, "mme_cognition_score,none": 300.0},
        "mmbench_en_dev": {"gpt_eval_score,none": 66.1},
        "mmmu_val": {"mmmu_acc,none": 0.361},
        "textvqa_val": {"exact_match,none": 0.4602, "exact_match_stderr,none": 0.004},
        "seed_image": {"seed_image,none": 0.6612},
        "gqa": {"exact_match,none": 0.6},
    }}
    scores = scores_from_lmms_eval(json.dumps(results).encode())
    assert scores == pytest.approx({"mme": 1510.5, "mmbench_en": 66.1, "mmmu_val": 36.1, "textvqa_val": 46.02,
                                    "seed_image": 66.12, "gqa": 60.0})
    study = apply_lmms_eval(bundled_study(), "CLIP336", results)
    assert study.wide_scores().loc["CLIP336", "mmmu_val"] == pytest.approx(36.1)


@pytest.mark.parametrize("payload,match", [
    (b"", "empty"),
    (b"\x00\x01\x02binary", "binary"),
    (b"{not json", "invalid JSON"),
    (b'{"something": 1}', "no \\\"results\\\""),
    (b'{"results": {"my_task": {"acc,none": 0.5, "f1,none": 0.4}}}', r"several metrics \(acc, f1\)"),
    (b'{"results": {"my_task": {"alias": "x"}}}', "no task with a numeric metric"),
    (b'{"results": {"../etc": {"acc,none": 0.5}}}', "is not allowed"),
    (b'{"results": {"mme": {"acc,none": 0.5}}}', "mme_perception_score"),
])
def test_lmms_eval_bad_input(payload, match):
    with pytest.raises(InputError, match=match):
        scores_from_lmms_eval(payload)


def test_editor_round_trip_and_validation():
    study = bundled_study()
    table = study_to_editor(study)
    back = study_from_editor(table, "edited")
    assert back.content_hash() == study.content_hash()
    table.loc[0, "mme"] = None
    assert np.isnan(study_from_editor(table, "e2").wide_scores().iloc[0]["mme"])
    table = table.astype({"A": object})
    table.loc[1, "A"] = "abc"
    with pytest.raises(InputError, match="non-numeric"):
        study_from_editor(table, "e3")
    with pytest.raises(InputError, match="invalid study name"):
        study_from_editor(study_to_editor(study), "")


BAD_FILES = [
    (b"", "empty"),
    (b"   \n  ", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"),
    (b"\xff\xfe\xfaabc,def\n1,2", "UTF-8"),
    (b"foo,bar\n1,2\n", "unrecognised columns"),
    (b"setting,A_loglik,C_pck10\nS1,1,2\n", "no benchmark columns"),
    (b"setting,A_loglik,C_pck10,mme,colour\nS1,1,2,3,red\n", "unknown column 'colour'"),
    (PAPER_CSV.replace("S2,-2.5", "S2,abc").encode(), "column 'A_loglik', row 3 .*non-numeric"),
    (PAPER_CSV.replace("S2,-2.5,20.0", "S2,-2.5,").encode(), "column 'C_pck10', row 3 .*missing value"),
    (PAPER_CSV.replace("S3,", "S1,").encode(), "duplicate setting 'S1'"),
    (PAPER_CSV.replace("55.0", "inf").encode(), "not finite"),
    ("\n".join(PAPER_CSV.splitlines()[:3]).encode(), "too few settings"),
    (PAPER_CSV.replace("-2.5", "-1.9").replace("-3.5", "-1.9").replace("-2.0", "-1.9").encode(), "A is constant"),
    (PAPER_CSV.replace("20.0", "15.0").replace(",5.0,", ",15.0,").replace("25.0", "15.0").encode(), "C is constant"),
    (b"setting,benchmark,A,C,score\nS1,mme,1,2,3\nS1,mme,1,2,4\n", "duplicate row"),
    (b"setting,benchmark,A,C,score\nS1,../../etc,1,2,3\n", r"row 2: benchmark name '\.\./\.\./etc' is not allowed"),
    (b"setting,benchmark,A,C,score\nS1,mme,1,2,3\nS1,ok_vqa,1,5,3\n", "different C"),
    (b"model,mme,corres\nS1,3,4\n", "missing column 'mme_average'"),
    (b'{"kind": "other"}', "not a Law Explorer study"),
]


@pytest.mark.parametrize("payload,match", BAD_FILES)
def test_bad_study_files(payload, match):
    with pytest.raises(InputError, match=match):
        parse_study_file(payload, name="bad")


def test_missing_file_and_bad_format(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        parse_study_file(tmp_path / "nope.csv", name="x")
    with pytest.raises(InputError, match="unknown format"):
        parse_study_file(PAPER_CSV.encode(), name="x", fmt="excel")


def test_validate_min_settings():
    study = parse_study_file(PAPER_CSV.encode(), name="p")
    validate_study(study, min_settings=3)
    with pytest.raises(InputError, match="need at least 5"):
        validate_study(study, min_settings=5)
