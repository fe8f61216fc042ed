"""Planning the scoring of an encoder: which of C and A are stored (reused) and which need a job.

Scale honesty: A and C measured with the offline demo pieces (demo projector + tiny demo LLM, the builtin
correspondence dataset, or a ``limit`` on pairs) are *demo-scale*: they are not on the scale of the paper's
A (Vicuna-7B stage-1 log-likelihood on LLaVA-558K) and C (PCK@0.10 on the full SPair-71k test split). A plan
says which scale each score is on; demo-scale settings go into a separate ``<study>-demo`` study by default.
See docs/pipeline.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd

from engine.errors import InputError
from engine.jobs import targets
from engine.jobs.state import JobStatus

C_TARGET = targets.C_EVALUATION
TRAIN_TARGET = targets.PROJECTOR_TRAINING
LOGLIK_TARGET = targets.A_V3_LOGLIK
A_DEFINITIONS = {"v3-loglik": "v3", "v1-clip-ref": "v1"}
DEMO_SUFFIX = "-demo"
USER_SUFFIX = "-user"
DEMO_PROJECTOR_SOURCE = "trained (demo)"


class StepState(StrEnum):
    """A step's state, one vocabulary: the plan's (reuse a stored result, run a job, not needed, unavailable) and
    what ``status`` adds (stored, waiting for another step, missing); a step with a job shows the job's
    ``JobStatus`` (queued, running, done, ...). Members equal their strings (CLI JSON is unchanged)."""

    REUSE = "reuse"
    RUN = "run"
    NOT_NEEDED = "not needed"
    UNAVAILABLE = "unavailable"
    STORED = "stored"
    WAITING = "waiting"
    MISSING = "missing"


SATISFIED = (StepState.REUSE, StepState.NOT_NEEDED, JobStatus.DONE)


@dataclass
class Step:
    """One piece of work: ``state`` is reuse (a stored result), run (a job is needed), not needed, unavailable."""

    key: str
    title: str
    state: str
    target: str | None = None
    params: dict[str, Any] | None = None
    needs: tuple[str, ...] = ()
    value: float | None = None
    stored_id: str | None = None
    note: str = ""


@dataclass
class StepStatus:
    """A step as it stands now: stored, a job's status (queued/running/done/failed/...), waiting, missing."""

    key: str
    title: str
    state: str
    job_id: str | None = None
    progress: tuple[int, int, str] = (0, 0, "")
    value: float | None = None
    error: str | None = None
    note: str = ""

    @property
    def fraction(self) -> float:
        done, total, _ = self.progress
        return min(1.0, done / total) if total else (1.0 if self.state in (StepState.STORED, JobStatus.DONE) else 0.0)


@dataclass
class Plan:
    """What scoring ``encoder`` for ``study`` takes; ``args`` re-creates it (``refresh``)."""

    encoder: str
    study: str
    setting: str
    a_definition: str
    c_protocol: str
    dataset: str
    demo: bool
    a_scale: str
    c_scale: str
    steps: list[Step]
    target_study: str = ""  # where add_to_study writes: <study>-demo for demo scale, <study>-user for a bundled one
    warnings: list[str] = field(default_factory=list)
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def scale(self) -> str:
        """``paper`` only when both A and C are on the paper's scale, else ``demo``."""
        return "paper" if self.a_scale == "paper" and self.c_scale == "paper" else "demo"


    def step(self, key: str) -> Step:
        return next(s for s in self.steps if s.key == key)

    @property
    def A(self) -> float | None:
        return self.step("a").value

    @property
    def C(self) -> float | None:
        return self.step("c").value

    @property
    def missing(self) -> list[Step]:
        return [s for s in self.steps if s.state == StepState.RUN]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(scale=self.scale, A=self.A, C=self.C)
        return data

    def table(self) -> pd.DataFrame:
        rows = [{"step": s.title, "state": s.state, "value": s.value, "job target": s.target or "", "note": s.note}
                for s in self.steps]
        return pd.DataFrame(rows)


def demo_study_name(study_name: str) -> str:
    """The separate user study that holds demo-scale settings measured against ``study_name``."""
    return study_name if study_name.endswith(DEMO_SUFFIX) else f"{study_name}{DEMO_SUFFIX}"


def user_study_name(study_name: str, demo_scale: bool = False) -> str:
    """Where scores for ``study_name`` are written: ``<study>-demo`` for demo scale, ``<study>-user`` for a
    bundled (read-only) study, else the study itself."""
    if demo_scale:
        return demo_study_name(study_name)
    return f"{study_name}{USER_SUFFIX}" if studies_index().get(study_name) else study_name


def studies_index() -> dict[str, bool]:
    """Study name -> whether it is bundled (read-only)."""
    from engine.study import list_studies

    return {str(s["name"]): bool(s.get("bundled")) for s in list_studies()}


def finite(value: Any, what: str) -> float:
    """``value`` as a finite float, else an InputError naming ``what``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} is not a number: {value!r}") from None
    if not math.isfinite(number):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return number


def _dataset_spec(dataset: str) -> str:
    """``builtin`` or ``spair:<path>`` spelled as the correspondence engine records it (path expanded)."""
    spec = str(dataset).strip()
    if spec == "builtin":
        return spec
    if spec.startswith("spair:") and len(spec) > len("spair:"):
        return "spair:" + str(Path(spec[len("spair:"):]).expanduser())
    raise InputError(f"unknown dataset {dataset!r} (use builtin or spair:/path/to/SPair-71k)")


# ----------------------------------------------------------------------------- stored results


def _stored_c(encoder: str, dataset: str, protocol_hash: str, split: str, limit: int | None) -> tuple[str, float] | None:
    from engine.correspondence.results import c_score, list_results

    for row in list_results(encoder):
        row_limit = row.get("limit_pairs")
        row_limit = None if row_limit is None or (isinstance(row_limit, float) and math.isnan(row_limit)) else int(row_limit)
        if (row["dataset"], row["protocol_hash"], row["split"], row_limit) == (dataset, protocol_hash, split, limit):
            return row["id"], c_score(row)
    return None


def _a_recipe_matches(row: pd.Series, a: dict[str, Any]) -> bool:
    recipe = json.loads(row.get("recipe") or "{}")
    if bool(recipe.get("demo")) != a["demo"] or int(row["n_images"]) != a["n"]:
        return False
    if row.get("seed") is not None and not pd.isna(row["seed"]) and int(row["seed"]) != a["seed"]:
        return False
    if a["demo"]:
        return True
    return row.get("llm") == a["llm"] and recipe.get("data") == a["data"]


def _stored_a(encoder: str, setting: str, a: dict[str, Any]) -> tuple[str, float] | None:
    from engine.alignment.records import list_a_scores

    table = list_a_scores(A_DEFINITIONS[a["definition"]])
    if a["definition"] == "v1-clip-ref":
        rows = table[(table["encoder"] == encoder) | (table["setting"] == setting)]
    else:
        rows = table[table["encoder"] == encoder]
        rows = rows[[_a_recipe_matches(r, a) for _, r in rows.iterrows()]] if len(rows) else rows
    if rows.empty:
        return None
    return str(rows.iloc[0]["id"]), float(rows.iloc[0]["a"])


def _stored_projector(encoder: str, a: dict[str, Any]) -> str | None:
    from engine.alignment.records import list_projectors

    table = list_projectors()
    rows = table[table["encoder"] == encoder]
    rows = rows[rows["source"] == DEMO_PROJECTOR_SOURCE] if a["demo"] else rows[rows["llm"] == a["llm"]]
    return None if rows.empty else str(rows.iloc[0]["id"])


# ----------------------------------------------------------------------------- planning


def _c_step(encoder: str, dataset: str, protocol: str, split: str, limit: int | None) -> Step:
    from engine.correspondence.protocols import get_protocol

    params = {"dataset": dataset, "encoder": encoder, "protocol": protocol, "split": split, "limit": limit}
    stored = _stored_c(encoder, dataset, get_protocol(protocol).hash(), split, limit)
    title = f"C: PCK@0.10 on {dataset} ({protocol}, {split}{'' if limit is None else f', {limit} pairs'})"
    if stored:
        return Step("c", title, StepState.REUSE, C_TARGET, params, value=stored[1], stored_id=stored[0], note="stored result")
    return Step("c", title, StepState.RUN, C_TARGET, params, note="a correspondence evaluation job is needed")


def _a_steps(encoder: str, setting: str, a: dict[str, Any]) -> list[Step]:
    stored = _stored_a(encoder, setting, a)
    if a["definition"] == "v1-clip-ref":
        title = "A-v1: max-cosine to CLIP reference tokens"
        if stored:
            return [Step("a", title, StepState.REUSE, value=stored[1], stored_id=stored[0], note="stored A-v1 score")]
        return [Step("a", title, StepState.UNAVAILABLE, note=(
            "A-v1 needs projected-token dumps of a finetuned MLLM and CLIP references: score them with "
            "`python -m engine alignment score`, or enter A by hand"))]
    common = {"demo": True} if a["demo"] else {"llm": a["llm"], "data": a["data"], "images": a["images"]}
    train = Step("projector", "Projector: stage-1 training" + (" (demo)" if a["demo"] else ""), StepState.RUN, TRAIN_TARGET,
                 {**common, "encoder": encoder}, note="a projector training job is needed")
    score = Step("a", "A-v3: caption log-likelihood" + (" (demo LLM)" if a["demo"] else ""), StepState.RUN, LOGLIK_TARGET,
                 {**common, "encoder": encoder, "n": a["n"], "seed": a["seed"]}, needs=("projector",),
                 note="an A-scoring job is needed")
    if not a["demo"] and not all(a[k] for k in ("llm", "data", "images")):
        why = "needs a cached LLM and LLaVA-558K (llm, align_data, align_images), or enter A by hand"
        return [replace(train, state=StepState.UNAVAILABLE, target=None, params=None, note=why),
                replace(score, state=StepState.UNAVAILABLE, target=None, params=None, note=why)]
    if stored:
        return [replace(train, state=StepState.NOT_NEEDED, note="A is stored"),
                replace(score, state=StepState.REUSE, value=stored[1], stored_id=stored[0], note="stored A-v3 score")]
    projector = _stored_projector(encoder, a)
    if projector:
        train = replace(train, state=StepState.REUSE, stored_id=projector, note="stored projector")
    return [train, score]


def plan(
    encoder_name: str,
    study_name: str,
    a_definition: str = "v3-loglik",
    c_protocol: str = "default",
    dataset: str = "builtin",
    demo: bool = True,
    *,
    setting: str | None = None,
    split: str = "test",
    limit: int | None = None,
    llm: str | None = None,
    align_data: str | None = None,
    align_images: str | None = None,
    n_captions: int = 100,
    seed: int = 0,
) -> Plan:
    """The steps to get C and A of an encoder for a study, each reusing a stored result or naming the job to run.

    ``demo`` uses the offline demo projector/LLM for A-v3 (smoke scale); otherwise ``llm``, ``align_data`` and
    ``align_images`` name the LLM and LLaVA-Pretrain data (the paper: Vicuna-7B v1.5, LLaVA-558K, 100 captions).
    """
    from engine.correspondence import results
    from engine.correspondence.datasets import normalise_split
    from engine.correspondence.protocols import get_protocol
    from engine.encoders.registry import display_name, get_spec
    from engine.study import load_study

    args = dict(encoder_name=encoder_name, study_name=study_name, a_definition=a_definition, c_protocol=c_protocol,
                dataset=dataset, demo=demo, setting=setting, split=split, limit=limit, llm=llm,
                align_data=align_data, align_images=align_images, n_captions=n_captions, seed=seed)
    if a_definition not in A_DEFINITIONS:
        raise InputError(f"unknown A definition {a_definition!r}; choose one of {', '.join(A_DEFINITIONS)}")
    if limit is not None and int(limit) < 1:
        raise InputError("limit must be a positive number of pairs")
    if int(n_captions) < 1:
        raise InputError("n_captions must be at least 1")
    spec = get_spec(encoder_name)
    get_protocol(c_protocol)
    split = normalise_split(split)
    dataset = _dataset_spec(dataset)
    study = load_study(study_name)
    a = {"definition": a_definition, "demo": bool(demo), "llm": llm, "data": None if align_data is None else str(align_data),
         "images": None if align_images is None else str(align_images), "n": int(n_captions), "seed": int(seed)}
    c_scale = results.c_scale(dataset, split, limit)
    a_scale = {"v1-clip-ref": "v1"}.get(a_definition, "demo" if demo else "paper")
    shown = display_name(spec)  # an upload's label rather than its upload:<hash> id
    name = (setting or shown).strip()
    if not setting and (c_scale != "paper" or a_scale != "paper"):
        name = f"{shown} (demo)"
    warnings = _scale_warnings(study, a_scale, c_scale)
    steps = [_c_step(spec.name, dataset, c_protocol, split, None if limit is None else int(limit)),
             *_a_steps(spec.name, name, a)]
    if any(s.state == StepState.RUN for s in steps) and not spec.offline_available():
        why = f"the weights of {shown} are not on this machine (offline): measure elsewhere and enter A and C by hand"
        steps = [replace(s, state=StepState.UNAVAILABLE, note=why) if s.state == StepState.RUN else s for s in steps]
        warnings.append(why[0].upper() + why[1:] + ".")
    if study.a_kind == "per_benchmark" and a_definition == "v3-loglik":
        warnings.append(f"Study '{study.name}' has one A per benchmark (A-v1); a single A-v3 is a different quantity.")
    target = user_study_name(study.name, demo_scale=not (a_scale == c_scale == "paper"))
    return Plan(spec.name, study.name, name, a_definition, c_protocol, dataset, bool(demo), a_scale, c_scale, steps,
                target, warnings, args)


def _scale_warnings(study: Any, a_scale: str, c_scale: str) -> list[str]:
    out = []
    if c_scale != "paper":
        out.append("C is demo-scale (builtin dataset or a subset of pairs): the paper's C is PCK@0.10 on the full "
                   "SPair-71k test split.")
    if a_scale == "demo":
        out.append("A is demo-scale (tiny demo LLM and projector): the paper's A is the stage-1 caption "
                   "log-likelihood under Vicuna-7B on LLaVA-558K.")
    elif a_scale == "v1":
        out.append("A-v1 (max cosine to CLIP tokens) is a different quantity from A-v3 (log-likelihood): do not "
                   "place it on a law fitted on A-v3.")
    else:
        out.append("A is treated as paper-scale: this assumes the LLM is Vicuna-7B v1.5 and the data LLaVA-558K.")
    if a_scale != "paper" or c_scale != "paper":
        out.append(f"Predictions on the law of '{study.name}' from demo-scale scores are illustrations, not results; "
                   f"the setting goes into the separate study '{demo_study_name(study.name)}'.")
    return out


def refresh(p: Plan) -> Plan:
    """The same plan re-made now (stored results that appeared since are reused)."""
    args = dict(p.args)
    return plan(args.pop("encoder_name"), args.pop("study_name"), **args)
