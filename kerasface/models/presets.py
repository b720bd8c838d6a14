"""The paper preset's layouts (``--preset paper``): three images, each through a full classifier backbone
(``include_top=True``), classifier outputs concatenated -> Dense(256, relu) -> Dense(10, sigmoid).

Parameter counts (independent of the input size):

==================  ===========  =============  ===========================================
backbone            trainable    non-trainable  per branch
==================  ===========  =============  ===========================================
densenet121         24,707,394   250,944        DenseNet121, 1000 classes, softmax
efficientnetv2s     61,715,706   461,616        EfficientNetV2S, 256 classes, relu
resnet50            77,521,602   159,360        ResNet50, 1000 classes, softmax
vit                 164,615,874  0              ViT 224/32, dim 1024, depth 6, 1000 logits
==================  ===========  =============  ===========================================

The paper's 65,146,290 trainable for EfficientNetV2S is this layout with 1000 classes per branch
instead of 256 (3 * 1281 * (1000 - 256) + 768 * (1000 - 256) = 3,430,584 more).
"""

from __future__ import annotations

import keras

from kerasface.models.branches import build_branch_model

SEED_INPUT_SHAPE = (224, 224, 3)

SEED_BACKBONE_KWARGS = {
    "densenet121": {"include_top": True, "classes": 1000, "classifier_activation": "softmax"},
    "efficientnetv2s": {"include_top": True, "classes": 256, "classifier_activation": "relu"},
    "resnet50": {"include_top": True, "classes": 1000, "classifier_activation": "softmax"},
    "vit": {
        "include_top": True,
        "classes": 1000,
        "classifier_activation": None,
        "patch_size": 32,
        "dim": 1024,
        "depth": 6,
        "heads": 16,
        "mlp_dim": 2048,
        "dropout": 0.1,
        "emb_dropout": 0.1,
    },
}


def seed_preset(backbone: str, input_shape=None) -> dict:
    """``build_branch_model`` kwargs of the paper preset's layout for ``backbone`` (default 224x224x3)."""
    key = backbone.lower()
    if key not in SEED_BACKBONE_KWARGS:
        raise KeyError(
            f"no paper preset for backbone {backbone!r}; choose one of: "
            f"{', '.join(sorted(SEED_BACKBONE_KWARGS))}"
        )
    return {
        "backbone": key,
        "num_branches": 3,
        "head": "concat",
        "num_outputs": 10,
        "input_shape": tuple(input_shape or SEED_INPUT_SHAPE),
        "output_activation": "sigmoid",
        "hidden_units": 256,
        "backbone_kwargs": dict(SEED_BACKBONE_KWARGS[key]),
        "name": f"seed_{key}",
    }


def build_seed_model(backbone: str, input_shape=None) -> keras.Model:
    """``build_branch_model(**seed_preset(backbone, input_shape))``."""
    return build_branch_model(**seed_preset(backbone, input_shape))
