"""Law models behind one interface: fit on training settings, predict a mean and a jackknife+ interval."""

from engine.law.models.base import FittedLaw, LawModel, LawPrediction, check_level, jackknife_plus
from engine.law.models.registry import DESCRIPTIONS, LAW_MODELS, get_law_model

__all__ = ["DESCRIPTIONS", "LAW_MODELS", "FittedLaw", "LawModel", "LawPrediction", "check_level", "get_law_model",
           "jackknife_plus"]
