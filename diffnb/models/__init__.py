"""The book's networks."""

from .embeddings import sinusoidal_embedding
from .mlp import ToyMLP

__all__ = ["sinusoidal_embedding", "ToyMLP"]
