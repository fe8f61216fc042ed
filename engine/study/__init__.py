"""Studies: settings with A, C, benchmark scores and metadata; importers, validation and the store."""

from engine.study.editor import groups_from_table, groups_table, study_from_editor, study_to_editor, study_to_tidy
from engine.study.io import FORMATS, detect_format, parse_study_file, study_from_json, study_to_json, validate_study
from engine.study.lmms_eval import apply_lmms_eval, scores_from_lmms_eval
from engine.study.model import LONG_COLUMNS, SETTING_META_COLUMNS, SETTINGS_COLUMNS, Study, make_study
from engine.study.repository import (
    BUNDLED_NAME,
    bundled_study,
    copy_study,
    delete_study,
    list_studies,
    load_study,
    save_study,
    set_groups,
    set_setting_scores,
    writable_study,
)


def study_groups(study: Study) -> dict[str, list[str]]:
    """Group -> the study's benchmarks in it (``vision``, ``ocr`` first; unknown benchmarks in ``other``)."""
    return study.groups


__all__ = [
    "BUNDLED_NAME",
    "FORMATS",
    "LONG_COLUMNS",
    "SETTINGS_COLUMNS",
    "SETTING_META_COLUMNS",
    "Study",
    "apply_lmms_eval",
    "bundled_study",
    "copy_study",
    "delete_study",
    "detect_format",
    "groups_from_table",
    "groups_table",
    "list_studies",
    "load_study",
    "make_study",
    "parse_study_file",
    "save_study",
    "scores_from_lmms_eval",
    "set_groups",
    "set_setting_scores",
    "study_from_editor",
    "study_from_json",
    "study_groups",
    "study_to_editor",
    "study_to_json",
    "study_to_tidy",
    "validate_study",
    "writable_study",
]
