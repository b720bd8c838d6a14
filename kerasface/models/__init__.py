"""Backbones (by name), our ViT, multi-branch models with their heads, and the seed layouts."""

from kerasface.models.backbones import create_backbone, list_backbones
from kerasface.models.branches import (
    branch_models,
    build_branch_model,
    init_branches_from,
    set_branch_trainable,
)
from kerasface.models.heads import VOTE_MODES
from kerasface.models.layers import ImagePreprocessing, L2Normalize
from kerasface.models.presets import build_seed_model, seed_preset
from kerasface.models.vit import build_vit

__all__ = [
    "ImagePreprocessing",
    "L2Normalize",
    "VOTE_MODES",
    "branch_models",
    "build_branch_model",
    "build_seed_model",
    "build_vit",
    "create_backbone",
    "init_branches_from",
    "list_backbones",
    "seed_preset",
    "set_branch_trainable",
]
