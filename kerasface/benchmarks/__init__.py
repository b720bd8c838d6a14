"""Benchmarks of the kit's stages: the input pipeline (``input``), face detection and alignment
(``detect``), the training step (``train_step``), Partial FC's margin head (``partial_fc``) and
inference per export format (``infer``);
the ``kerasface-benchmark-*`` commands run them."""
