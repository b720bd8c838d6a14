"""Evaluation: pair sets, embeddings, verification (LFW protocol), identification, attribute
metrics, and a training callback."""
