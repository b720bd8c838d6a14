"""kerasface: multi-branch face recognition and face-attribute models on Keras 3."""

__version__ = "0.1.0"
