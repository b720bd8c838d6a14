"""Margin heads and losses for face recognition, registered by name by calling contract.

- ``MARGIN_HEADS``: Keras layers ``head(num_classes, **options)`` called
  ``head(embeddings, labels) -> logits``; ``margin_head(name, num_classes, sample_rate=None)``
  builds one, wrapped in :class:`PartialFC` when ``sample_rate`` is given.
- ``METRIC_LOSSES``: ``loss(labels, embeddings)``, on in-batch pairs or triplets.
- ``LOGIT_LOSSES``: ``loss(labels, logits)`` over a margin head's logits.

(``kerasface.registry``; ``LOSSES`` reads all three.) Every module of this package is imported
with it, so a new head or loss is one file that registers itself. Attribute losses and metrics
that leave missing values out: MaskedCrossentropy, MaskedAUC.
"""

import importlib
import pkgutil

from kerasface.losses.adaface import AdaFace
from kerasface.losses.contrastive import ContrastiveLoss
from kerasface.losses.focal import FocalLoss
from kerasface.losses.magface import MagFace
from kerasface.losses.masked import MaskedAUC, MaskedCrossentropy
from kerasface.losses.margin import (
    ArcFace, CombinedMargin, CosFace, MarginHead, NormFace, Softmax, SphereFace,
)
from kerasface.losses.ohem import OHEM
from kerasface.losses.partial_fc import PartialFC, margin_head
from kerasface.losses.triplet import TripletLoss

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "AdaFace", "ArcFace", "CombinedMargin", "ContrastiveLoss", "CosFace", "FocalLoss", "MagFace",
    "MarginHead", "MaskedAUC", "MaskedCrossentropy", "NormFace", "OHEM", "PartialFC", "Softmax",
    "SphereFace", "TripletLoss", "margin_head",
]
