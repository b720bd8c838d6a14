"""Benchmarks of the kit's stages: the input pipeline (``input``), face detection and alignment
(``detect``), the training step (``train_step``) and Partial FC's margin head (``partial_fc``);
the ``kerasface-benchmark-*`` commands run them."""
