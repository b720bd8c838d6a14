"""Real photographs to aligned faces and identities: MTCNN detection (``detect``), 5-point
alignment to the ArcFace template (``align``), photo reading (``imread``), dataset preparation
(``prepare``), galleries of enrolled people (``gallery``) and the identification app (``app``)."""
