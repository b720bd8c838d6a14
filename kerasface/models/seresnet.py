"""Squeeze-and-excitation IR networks for faces (SE: Hu et al., 2018, arXiv:1709.01507), the
"IR-SE" of insightface and face.evoLVe (``IR_SE_50``): arcface_torch's IR block with an SE
module on the residual branch before the addition. Each returns an embedding model.

    create_backbone("seresnet18", (112, 112, 3))   # (None, 512) embeddings

The SE module is ``Dense(C/16, relu) -> Dense(C, sigmoid)`` with biases, as in Hu et al.'s
released models (face.evoLVe's bias-free 1x1 convs have ``C/16 + C`` fewer weights per block).
"""

from __future__ import annotations

from kerasface.models.iresnet import register_ir_network

SE_REDUCTION = 16
SERESNET_LAYERS = {
    "seresnet18": (2, 2, 2, 2),
    "seresnet34": (3, 4, 6, 3),
}


for _backbone, _blocks in SERESNET_LAYERS.items():
    register_ir_network(_backbone, _blocks, se_reduction=SE_REDUCTION)
