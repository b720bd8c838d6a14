"""Squeeze-and-excitation IR networks for faces (SE: Hu et al., 2018, arXiv:1709.01507), the
"IR-SE" of insightface and face.evoLVe (``IR_SE_50``): arcface_torch's IR block with an SE
module on the residual branch before the addition. Each returns an embedding model.

    create_backbone("seresnet18", (112, 112, 3))   # (None, 512) embeddings

The SE module is ``Dense(C/16, relu) -> Dense(C, sigmoid)`` with biases, as in Hu et al.'s
released models (face.evoLVe's bias-free 1x1 convs have ``C/16 + C`` fewer weights per block).
"""

from __future__ import annotations

import functools

from kerasface.models.iresnet import build_ir_network, embedding_backbone
from kerasface.registry import BACKBONES

SE_REDUCTION = 16
SERESNET_LAYERS = {
    "seresnet18": (2, 2, 2, 2),
    "seresnet34": (3, 4, 6, 3),
}


def _register_seresnet(backbone: str, blocks_per_stage) -> None:
    def builder(input_shape, name, embedding_dim=512, dropout=0.0, activation="prelu"):
        return build_ir_network(
            input_shape,
            blocks_per_stage,
            name,
            embedding_dim,
            dropout,
            activation,
            se_reduction=SE_REDUCTION,
        )

    registered = functools.partial(embedding_backbone, builder, backbone)
    registered.embedding_output = True
    registered.__doc__ = (
        f"{backbone}: IR-SE network with {list(blocks_per_stage)} blocks per stage "
        "(``build_ir_network`` with SE reduction 16); options ``embedding_dim=512, dropout=0.0, "
        "activation='prelu'|'relu'``; the output is always the embedding."
    )
    BACKBONES.register(backbone)(registered)


for _backbone, _blocks in SERESNET_LAYERS.items():
    _register_seresnet(_backbone, _blocks)
