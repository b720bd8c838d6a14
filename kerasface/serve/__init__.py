"""The HTTP face service (``kerasface-serve``): embed, verify, identify, enroll and remove people."""

MAX_IMAGE_PIXELS = 2 ** 26
