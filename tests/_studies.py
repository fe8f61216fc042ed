"""A small random study for policy tests: n settings with uniform A, C and one benchmark (mme) scored 20-70."""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.study import make_study


def toy_study(n: int, seed: int):
    """The seeded toy study (``S0``..``S{n-1}``)."""
    rng = np.random.default_rng(seed)
    names = [f"S{i}" for i in range(n)]
    settings = pd.DataFrame({"setting": names, "A": rng.random(n), "C": rng.random(n)})
    scores = pd.DataFrame({"mme": rng.random(n) * 50 + 20}, index=names)
    return make_study("toy", settings, scores)
