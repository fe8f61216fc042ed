"""Alignment engine: A scores (v1 CLIP-reference, v3 caption likelihood), the stage-1 projector and its training."""
