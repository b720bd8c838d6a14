"""Backbones (by name), our ViT, face-recognition embedding networks (IResNet, IR-SE,
MobileFaceNet), multi-branch models with their heads, and the paper preset's layouts."""

import kerasface.models.seresnet  # noqa: F401  (registers seresnet18/34)
from kerasface.models.backbones import create_backbone, list_backbones
from kerasface.models.branches import (
    branch_models,
    build_branch_model,
    init_branches_from,
    set_branch_trainable,
)
from kerasface.models.erasure import ConceptErasure, fit_concept_eraser
from kerasface.models.heads import VOTE_MODES
from kerasface.models.iresnet import build_ir_network
from kerasface.models.layers import ImagePreprocessing, L2Normalize
from kerasface.models.mobilefacenet import build_mobilefacenet
from kerasface.models.multitask import build_multitask_model
from kerasface.models.presets import build_seed_model, seed_preset
from kerasface.models.reversal import GradientReversal
from kerasface.models.vit import build_vit

__all__ = [
    "ConceptErasure",
    "GradientReversal",
    "ImagePreprocessing",
    "L2Normalize",
    "VOTE_MODES",
    "branch_models",
    "build_branch_model",
    "build_ir_network",
    "build_mobilefacenet",
    "build_multitask_model",
    "build_seed_model",
    "build_vit",
    "create_backbone",
    "fit_concept_eraser",
    "init_branches_from",
    "list_backbones",
    "seed_preset",
    "set_branch_trainable",
]
