"""Datasets the kit ships (like ``keras.datasets``): the rendered demo faces."""
