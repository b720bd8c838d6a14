"""kerasface: multi-branch face recognition and face-attribute models on Keras 3."""

import os

# TensorFlow's C++ info and warning logs, unless the user sets the level
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
