"""Batch inference: the Tagger, its CLI (python -m infer), page views and the benchmark."""
from infer.tagger import Tagger  # noqa: F401
