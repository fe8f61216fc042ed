"""Law Explorer engine: studies, the law of vision representation, the AC policy, and the A/C scoring engines."""

__version__ = "0.1.0"
