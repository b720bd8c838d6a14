"""report.md from the report dict (the same dict written to report.json, so either renders it)."""

from __future__ import annotations

from tabulate import tabulate

from kerasface.report.card import (
    METRIC_ABBREVIATIONS,
    NOTES_COLUMNS,
    field_label,
    format_number,
    metric_order,
)
from kerasface.report.history import epoch_grids, notes_tables, shown_epochs


def _cell(text) -> str:
    return str(text).replace("\n", " ").replace("|", "\\|")


def markdown_table(rows: list[list], headers: list[str]) -> str:
    return tabulate(
        [[_cell(c) for c in row] for row in rows],
        headers=[_cell(h) for h in headers],
        tablefmt="github",
        disable_numparse=True,
    )


def _results_section(results: dict) -> list[str]:
    if not results:
        return ["No final evaluation was recorded."]
    names = metric_order({m: None for metrics in results.values() for m in metrics})
    rows = [[split] + [format_number(metrics.get(m)) for m in names] for split, metrics in results.items()]
    headers = ["split"] + [METRIC_ABBREVIATIONS.get(m, m) for m in names]
    return [markdown_table(rows, headers)]


def _auc_section(report: dict) -> list[str]:
    auc, counts, skipped = report["label_auc"], report["label_counts"], report["skipped_labels"]
    if not auc and not skipped:
        return ["No per-label scores were given."]
    lines = []
    if auc:
        rows = [
            [label, format_number(value), counts[label]["positives"], counts[label]["negatives"]]
            for label, value in auc.items()
        ]
        lines.append(markdown_table(rows, ["label", "AUC", "positives", "negatives"]))
        lines.append(f"Mean AUC over {len(auc)} label(s): {format_number(report['mean_label_auc'])}")
    if skipped:
        lines.append(f"Skipped {len(skipped)} label(s), no ROC curve possible:")
        lines.append("\n".join(f"- `{label}`: {reason}" for label, reason in skipped.items()))
    return lines


def _history_section(report: dict) -> list[str]:
    history, n = report["history"], report["epochs_run"]
    if n == 0:
        return ["No epochs were logged."]
    epochs = shown_epochs(n)
    shown = "all epochs" if len(epochs) == n else "epochs " + ", ".join(map(str, epochs))
    return [
        f"{n} epoch(s); shown here: {shown} (every epoch is in report.json and history.csv).",
        "```text\n" + epoch_grids(history, epochs) + "\n```",
        *notes_tables(history, epochs),
    ]


def render_markdown(report: dict) -> str:
    row = report["notes_row"]
    card = report["card_text"]
    sections = [
        f"# Run report: {report['run_id']}",
        "## Card",
        markdown_table([[row[c] for c in NOTES_COLUMNS]], list(NOTES_COLUMNS)),
        markdown_table([[field_label(k), v] for k, v in card.items()], ["field", "value"]),
        "## Results",
        *_results_section(report["results"]),
        "## Per-label AUC (test)",
        *_auc_section(report),
        "## Training history",
        *_history_section(report),
    ]
    for section in report.get("sections", []):
        sections.extend([f"## {section['title']}", section["text"]])
    if report["plots"]:
        sections.append("## Plots")
        sections.extend(f"![{name.removesuffix('.png')}]({name})" for name in report["plots"])
    return "\n\n".join(sections) + "\n"
