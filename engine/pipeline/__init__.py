"""Score an encoder end to end: plan which of C and A are stored or need jobs, launch them, place it on the law.

Scale honesty: A and C measured with the offline demo pieces (demo projector + tiny demo LLM, the builtin
correspondence dataset, or a ``limit`` on pairs) are *demo-scale*: they are not on the scale of the paper's A
(Vicuna-7B stage-1 log-likelihood on LLaVA-558K) and C (PCK@0.10 on the full SPair-71k test split). A plan says
which scale each score is on; demo-scale settings go into a separate ``<study>-demo`` study by default.
See docs/pipeline.md.
"""

from engine.pipeline.jobs import complete, launch, measurement_record, scores, status
from engine.pipeline.placement import (
    add_to_study,
    place_on_law,
    placement_flags,
    recommend_next,
    with_candidate,
)
from engine.pipeline.planning import (
    A_DEFINITIONS,
    C_TARGET,
    LOGLIK_TARGET,
    TRAIN_TARGET,
    Plan,
    Step,
    StepStatus,
    demo_study_name,
    finite,
    plan,
    refresh,
    user_study_name,
)

__all__ = [
    "A_DEFINITIONS",
    "C_TARGET",
    "LOGLIK_TARGET",
    "TRAIN_TARGET",
    "Plan",
    "Step",
    "StepStatus",
    "add_to_study",
    "complete",
    "demo_study_name",
    "finite",
    "launch",
    "measurement_record",
    "place_on_law",
    "placement_flags",
    "plan",
    "recommend_next",
    "refresh",
    "scores",
    "status",
    "user_study_name",
    "with_candidate",
]
