"""Nostrade Engine: a context-aware anime recommender (SASRec with item, feedback and time embeddings)."""

__version__ = "0.1.0"
