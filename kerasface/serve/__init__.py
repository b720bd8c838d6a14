"""The HTTP face service (``kerasface-serve``): embed, verify, identify, enroll and remove people."""
