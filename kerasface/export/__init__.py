"""Export of trained models for serving (SavedModel), checked against the Keras model."""

DEFAULT_TOLERANCE = 1e-4
"""Largest absolute difference allowed between an export's outputs and the Keras model's."""
