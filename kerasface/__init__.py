"""kerasface: multi-branch face recognition and face-attribute models on Keras 3."""

import os

# TensorFlow's C++ start-up notices (oneDNN, CPU features) unless the user asks for them
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
