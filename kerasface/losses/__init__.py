"""Margin heads and metric losses for face recognition, registered by name in ``LOSSES``.

Heads (Keras layers, ``head(embeddings, labels) -> logits``): softmax, normface, sphereface,
cosface, arcface, combined, magface, adaface. Losses (``loss(labels, embeddings or logits)``):
triplet, contrastive, focal, ohem. Attribute losses and metrics that leave missing values out:
MaskedCrossentropy, MaskedAUC.
"""

from kerasface.losses.adaface import AdaFace
from kerasface.losses.contrastive import ContrastiveLoss
from kerasface.losses.focal import FocalLoss
from kerasface.losses.magface import MagFace
from kerasface.losses.masked import MaskedAUC, MaskedCrossentropy
from kerasface.losses.margin import (
    ArcFace, CombinedMargin, CosFace, MarginHead, NormFace, Softmax, SphereFace,
)
from kerasface.losses.ohem import OHEM
from kerasface.losses.triplet import TripletLoss

__all__ = [
    "AdaFace", "ArcFace", "CombinedMargin", "ContrastiveLoss", "CosFace", "FocalLoss", "MagFace",
    "MarginHead", "MaskedAUC", "MaskedCrossentropy", "NormFace", "OHEM", "Softmax", "SphereFace", "TripletLoss",
]
