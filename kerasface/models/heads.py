"""Heads that merge the branch features of a multi-branch model, chosen by name from ``HEADS``.

Every head has the signature ``head(features, num_outputs, output_activation, hidden_units, vote,
embedding_dim) -> KerasTensor`` (``features``: one ``(B, F_i)`` tensor per branch), uses only the
options it needs, and ends in a float32 layer named "output" so mixed precision keeps float32
outputs.
"""

from __future__ import annotations

from keras import layers

from kerasface.models.layers import L2Normalize
from kerasface.registry import HEADS

VOTE_MODES = ("mean", "sum", "learned")
OUTPUT_NAME = "output"


def _concatenate(features, name):
    return features[0] if len(features) == 1 else layers.Concatenate(name=name)(features)


@HEADS.register("concat")
def concat_head(
    features, num_outputs=10, output_activation="sigmoid", hidden_units=256, vote="mean",
    embedding_dim=128,
):
    """concat(features) -> Dense(hidden_units, relu) -> Dense(num_outputs, output_activation)."""
    x = _concatenate(features, "branch_features")
    x = layers.Dense(hidden_units, activation="relu", name="head_hidden")(x)
    return layers.Dense(
        num_outputs, activation=output_activation, dtype="float32", name=OUTPUT_NAME
    )(x)


@HEADS.register("vote")
def vote_head(
    features, num_outputs=10, output_activation="sigmoid", hidden_units=256, vote="mean",
    embedding_dim=128,
):
    """Each branch i its own classifier ``z_i = Dense(num_outputs)(f_i)`` ("vote_logits_i"),
    ``p_i = act(z_i)`` ("vote_i"), combined by ``vote``:

    - "mean": ``mean_i p_i`` (mean of the branch probabilities).
    - "sum": ``act(sum_i z_i)``; the logits are summed, not the probabilities, so a sigmoid or
      softmax output stays a probability (for sigmoid this is a product of the branch odds).
    - "learned": ``concat(p_i) -> Dense(hidden_units, relu) -> Dense(num_outputs, act)``.
    """
    if vote not in VOTE_MODES:
        raise ValueError(f"vote {vote!r} is not one of {', '.join(VOTE_MODES)}")
    logits = [
        layers.Dense(num_outputs, name=f"vote_logits_{i}")(feature)
        for i, feature in enumerate(features)
    ]
    if vote == "sum":
        total = logits[0] if len(logits) == 1 else layers.Add(name="vote_logit_sum")(logits)
        return layers.Activation(output_activation, dtype="float32", name=OUTPUT_NAME)(total)
    votes = [
        layers.Activation(output_activation, dtype="float32", name=f"vote_{i}")(z)
        for i, z in enumerate(logits)
    ]
    if vote == "mean":
        if len(votes) == 1:
            return layers.Identity(dtype="float32", name=OUTPUT_NAME)(votes[0])
        return layers.Average(dtype="float32", name=OUTPUT_NAME)(votes)
    x = _concatenate(votes, "votes")
    x = layers.Dense(hidden_units, activation="relu", name="vote_hidden")(x)
    return layers.Dense(
        num_outputs, activation=output_activation, dtype="float32", name=OUTPUT_NAME
    )(x)


@HEADS.register("embedding")
def embedding_head(
    features, num_outputs=10, output_activation="sigmoid", hidden_units=256, vote="mean",
    embedding_dim=128,
):
    """concat(features) -> Dense(embedding_dim) -> L2Normalize: unit-norm embeddings."""
    x = _concatenate(features, "branch_features")
    x = layers.Dense(embedding_dim, name="embedding_projection")(x)
    return L2Normalize(dtype="float32", name=OUTPUT_NAME)(x)
