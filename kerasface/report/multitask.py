"""The multi-task table: per epoch, Metric | Train | Test of the multitask task's figures
(losses per output, attribute AUCs, identity verification AUCs)."""

from __future__ import annotations

from kerasface.report.history import epoch_grid, epoch_grids

TEST_HEADER = "Test"
TEST_PREFIX = "val_test_"


def multitask_table_rows(attributes, adversaries=None) -> list[str]:
    """The multi-task table's rows: loss, loss_id, loss_<a> per attribute and loss_da_<a> per
    attribute of ``adversaries`` (None: every attribute), auc_<a> per attribute, auc_id_cosine,
    auc_id_euclidean."""
    adversaries = attributes if adversaries is None else adversaries
    rows = ["loss", "loss_id"]
    for a in attributes:
        rows += [f"loss_{a}", f"loss_da_{a}"] if a in adversaries else [f"loss_{a}"]
    return rows + [f"auc_{a}" for a in attributes] + ["auc_id_cosine", "auc_id_euclidean"]


def multitask_table(history: dict, epochs: list[int], attributes, adversaries=None) -> str:
    """The multi-task grid (Metric | Train | Test) for each of ``epochs`` (1-based) of ``history``."""
    return epoch_grids(history, epochs, names=multitask_table_rows(attributes, adversaries), test_prefix=TEST_PREFIX,
                       test_header=TEST_HEADER)


def multitask_epoch_table(logs: dict, attributes, adversaries=None) -> str:
    """The multi-task grid of one epoch's ``logs``."""
    return epoch_grid({k: [v] for k, v in logs.items()}, 1, names=multitask_table_rows(attributes, adversaries),
                      test_prefix=TEST_PREFIX, test_header=TEST_HEADER)


seed_table_rows = multitask_table_rows  # deprecated names
seed_table = multitask_table
