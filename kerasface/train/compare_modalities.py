"""The modality comparison of the paper (section 2): one identity-embedding branch
per photometric-stereo modality, the three frozen and fused by concatenation, then the same
fusion fine-tuned jointly; verification AUC on identities never trained on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasface.data.crops import VIEW_NAMES
from kerasface.report.card import format_duration
from kerasface.train.compare import Training, run_training, study_folder, write_table
from kerasface.train.config import TrainConfig

MODALITIES = VIEW_NAMES["modalities"]
FROZEN, TUNED = "fused frozen", "fused fine-tuned"
# section 2 of the paper: (cosine, euclidean) AUC per run, in the paper's order
NOTES_AUC = {
    "albedo": [(0.9580, 0.9575), (0.9485, 0.9502)],
    "normal": [(0.9386, 0.9394), (0.8976, 0.9177)],
    "depth": [(0.8733, 0.8825)],
    FROZEN: [(0.9737, 0.9747), (0.8999, 0.9271)],
}
NOTES_TUNED = {"last": (0.9493, 0.9607), "best": (0.9659, 0.9686)}
COLUMNS = ("modality", "run", "seed", "auc_cosine_last", "auc_euclidean_last", "auc_cosine_best",
           "auc_euclidean_best", "best_epoch", "epochs", "paper (cosine / euclidean)")
METRIC = "val_test_auc_{}"


def tile_folder(data: str | None, out: Path, demo_config=None) -> Path:
    """The albedo | normal | depth tiles to train on: ``data`` when it holds tiles, tiles built
    into ``<out>/tiles`` when it holds photometric-stereo renders (``lights.json``), or tiles of
    the demo dataset's renders (``demo_config``) when ``data`` is None."""
    from kerasface.modalities.photometric import build_modality_dataset

    if data is not None and not (Path(data) / "lights.json").is_file():
        if not Path(data).exists():
            raise FileNotFoundError(f"{data}: no such folder; --data takes albedo | normal | depth tiles "
                                    "(kerasface-photometric-stereo's output) or the renders it reads")
        return Path(data)
    if data is None:
        from kerasface.datasets.demo import ensure_demo_dataset

        data = ensure_demo_dataset(config=demo_config)
    build_modality_dataset(data, out / "tiles", progress=True)
    return out / "tiles"


def epoch_figures(report: dict) -> dict:
    """AUC by cosine and euclidean distance on the test identities at the last and the best epoch."""
    history, best = report["history"], report["card"]["best_epoch"]
    row = {"best_epoch": best, "epochs": len(history.get(METRIC.format("cosine"), []))}
    for distance in ("cosine", "euclidean"):
        values = history.get(METRIC.format(distance)) or [np.nan]
        row[f"auc_{distance}_last"] = values[-1]
        row[f"auc_{distance}_best"] = values[best - 1] if best <= len(values) else np.nan
    return row


def _notes_text(modality: str, run: int) -> str:
    if modality == TUNED:
        return "; ".join(f"{k} {c:.4f} / {e:.4f}" for k, (c, e) in NOTES_TUNED.items()) if run == 1 else "-"
    figures = NOTES_AUC.get(modality, [])
    return f"{figures[run - 1][0]:.4f} / {figures[run - 1][1]:.4f}" if run <= len(figures) else "-"


def _mean(rows: list[dict], modality: str, key: str) -> float:
    values = [r[key] for r in rows if r["modality"] == modality and key in r]
    return float(np.mean(values)) if values else float("nan")


def _spread(rows: list[dict], modality: str, key: str) -> float:
    values = [r[key] for r in rows if r["modality"] == modality and key in r]
    return float(np.ptp(values)) if len(values) > 1 else 0.0


def conclusions(rows: list[dict]) -> list[str]:
    """Which of the paper's conclusions held on these figures (means over the runs)."""
    lines = []
    frozen = {d: _mean(rows, FROZEN, f"auc_{d}_best") for d in ("cosine", "euclidean")}
    epochs = ["last", "best"]
    if all(r.get("best_epoch") == r.get("epochs") for r in rows if r["modality"] == TUNED):
        epochs = ["last"]  # every fine-tuned run was best at its last epoch
    for epoch in epochs:
        tuned = {d: _mean(rows, TUNED, f"auc_{d}_{epoch}") for d in ("cosine", "euclidean")}
        if any(np.isnan(v) for v in (*frozen.values(), *tuned.values())):
            lines.append(f"Fine-tuned ({epoch} epoch) against frozen: not measured (a row failed).")
            continue
        lower = [tuned[d] < frozen[d] for d in frozen]
        verdict = ("held: fine-tuning jointly disturbed the branches" if all(lower) else
                   "did not hold: fine-tuning jointly did not disturb the branches" if not any(lower) else
                   "held for one distance only")
        noise = max(_spread(rows, FROZEN, "auc_cosine_best"), _spread(rows, TUNED, f"auc_cosine_{epoch}"))
        gap = abs(tuned["cosine"] - frozen["cosine"])
        which = "last epoch (also its best)" if epochs == ["last"] else f"{epoch} epoch"
        lines.append(
            f"Notes: fine-tuning the branches jointly disturbs them (fused fine-tuned below fused frozen). "
            f"Here, fine-tuned at its {which} {tuned['cosine']:.4f} / {tuned['euclidean']:.4f} against frozen "
            f"{frozen['cosine']:.4f} / {frozen['euclidean']:.4f} (cosine / euclidean, mean of the runs): {verdict}"
            + (f", though the cosine gap {gap:.4f} is within the spread between runs ({noise:.4f})."
               if gap <= noise else "."))
    singles = {m: _mean(rows, m, "auc_cosine_best") for m in MODALITIES}
    measured = [m for m in singles if not np.isnan(singles[m])]
    if measured and not np.isnan(frozen["cosine"]):
        best = max(measured, key=singles.get)
        verdict = "held" if frozen["cosine"] > singles[best] else "did not hold"
        lines.append(f"Notes: the frozen fusion beats every single modality. Here frozen {frozen['cosine']:.4f} "
                     f"against the best single modality ({best}) {singles[best]:.4f} (cosine): {verdict}.")
    if len(measured) == len(MODALITIES):
        order = sorted(MODALITIES, key=singles.get, reverse=True)
        verdict = "held" if order == list(MODALITIES) else "did not hold"
        lines.append(f"Notes: albedo > normal map > depth map. Here {' > '.join(order)} "
                     f"({', '.join(f'{m} {singles[m]:.4f}' for m in order)}, cosine): {verdict}.")
    return lines


def compare_modalities(config: TrainConfig, data: str | None = None, out=None, runs: int = 2, log=print,
                       demo_config=None) -> Path:
    """Train the paper's modality comparison ``runs`` times (seeds ``config.seed + k``) into
    ``<out>/<row>-run-<k>/`` and write ``table.md`` / ``table.json`` there. ``config`` is a
    recognition run over the modalities view; a finished row is reused, an interrupted one
    continues."""
    out = study_folder(out, config.out, "compare-modalities")
    tiles = tile_folder(data, out, demo_config)
    base = config.replace(data=str(tiles), views="modalities", init_branches=None, freeze_branches=[])
    rows: list[dict] = []

    def row(modality: str, run: int, done: Training) -> None:
        entry = {"modality": modality, "run": run, "seed": config.seed + run - 1,
                 "paper (cosine / euclidean)": _notes_text(modality, run)}
        if done.error:
            entry["error"] = done.error
        else:
            entry.update(epoch_figures(done.report), wall_time_s=done.report["card"].get("wall_time_s"))
        rows.append(entry)

    for run in range(1, runs + 1):
        seed = config.seed + run - 1
        branches = {}
        for modality in MODALITIES:
            done = run_training(out, f"{modality}-run-{run}", base.replace(modalities=[modality], seed=seed), log)
            row(modality, run, done)
            branches[modality] = done
        failed = [m for m, done in branches.items() if done.error]
        for modality, frozen in ((FROZEN, [0, 1, 2]), (TUNED, [])):
            name = f"{modality.replace(' ', '-')}-run-{run}"
            if failed:
                row(modality, run, Training(name, error=f"the {', '.join(failed)} branch failed"))
                continue
            fused = base.replace(modalities=list(MODALITIES), seed=seed, freeze_branches=frozen,
                                 init_branches=[str(branches[m].run_dir) for m in MODALITIES])
            row(modality, run, run_training(out, name, fused, log))
    rows.sort(key=lambda r: ([*MODALITIES, FROZEN, TUNED].index(r["modality"]), r["run"]))
    source = data or (f"photometric-stereo tiles of the demo dataset ({demo_config.identities} identities x "
                      f"{demo_config.images_per_identity} images, rendered at {demo_config.image_size} px)"
                      if demo_config else "photometric-stereo tiles of the demo dataset")
    card = {"backbone": config.model.backbone, "loss": config.task_config.loss, "dataset": source,
            "image_size": config.data.image_size, "embedding_dim": config.task_config.embedding_dim,
            "epochs": config.optim.epochs, "batch_size": config.optim.batch_size,
            "learning_rate": config.optim.learning_rate,
            "training time (the rows' runs)": format_duration(sum(r.get("wall_time_s") or 0 for r in rows))}
    found = conclusions(rows)
    text = (", ".join(f"{k}: {v}" for k, v in card.items())
            + "\n\nVerification AUC on the test identities (never trained on), by cosine similarity and "
            "euclidean distance, at the last epoch and at the best epoch (by the validation identities' "
            "cosine AUC); the fused rows start from the same run's three branches, frozen or fine-tuned. "
            "The paper's column gives the paper's figure for the same row and run.\n\n"
            + "\n".join(f"- {line}" for line in found))
    write_table(out, "table", "Modality comparison (paper, section 2)", text, COLUMNS, rows,
                {"card": card, "conclusions": found}, log)
    return out
