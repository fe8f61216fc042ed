"""Keypoint-pair datasets behind one interface: SPair-71k from disk and the generated builtin set.

``base`` (Pair, Dataset, splits, image decoding), ``spair``, ``builtin``, ``factory`` (``open_dataset``) and
``pair_index`` (SPair's parsed pairs kept on disk).
"""

from engine.correspondence.datasets.base import SPLIT_ALIASES, SPLITS, Dataset, Pair, normalise_split, read_rgb
from engine.correspondence.datasets.factory import forget_opened, open_dataset
from engine.correspondence.datasets.spair import SPairDataset

__all__ = ["SPLITS", "SPLIT_ALIASES", "Dataset", "Pair", "SPairDataset", "forget_opened", "normalise_split", "open_dataset",
           "read_rgb"]
