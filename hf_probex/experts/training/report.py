"""Plain-text tables of cross-validation reports: methods x metrics (mean +- SE), references, cost."""

from __future__ import annotations


def _fmt(stat: dict | None) -> str:
    return "-" if stat is None else f"{stat['mean']:5.1f} +- {stat['se']:.1f}"


def format_reports(reports: list[dict], labels: list[str] | None = None) -> str:
    """One table for reports of one (tree, layer): a row per method (named by `labels`), then the references.

    Columns: every metric, the same method on shuffled labels (first metric), parameters, training
    seconds per fold and prediction milliseconds per model.
    """
    first = reports[0]
    metrics = list(first["metrics"])
    labels = labels or [r["method"] for r in reports]
    width = max(len(name) for name in [*labels, *("ref: " + ref for ref in first["references"])])
    lines = [
        f"{first['tree']} / {first['layer']}: {first['models']} models"
        + (f" (+{first['holdout_models']} held-out)" if first["holdout_models"] else "")
        + f", {describe_cv(first)} (seed {first['seed']}), {first['task']}, in percent, mean +- SE over folds",
        f"{'method':<{width}} " + " ".join(f"{m:>14}" for m in metrics)
        + f" {'shuffled ' + metrics[0]:>22} {'params':>10} {'train s':>8} {'ms/model':>8}",
    ]
    for label, report in zip(labels, reports):
        shuffled = report["shuffled"][metrics[0]] if report["shuffled"] else None
        lines.append(f"{label:<{width}} " + " ".join(f"{_fmt(report['metrics'][m]):>14}" for m in metrics)
                     + f" {_fmt(shuffled):>22} {report['parameters']:>10,} {report['train_seconds']['mean']:>8.2f}"
                     f" {report['predict_ms_per_model']:>8.3f}")
    for name, stats in first["references"].items():
        lines.append(f"{'ref: ' + name:<{width}} " + " ".join(f"{_fmt(stats.get(m)):>14}" for m in metrics))
    if first["chance"]:
        lines.append(f"{'ref: chance':<{width}} " + " ".join(
            f"{first['chance'][m]:>14.1f}" if m in first["chance"] else f"{'-':>14}" for m in metrics))
    return "\n".join(lines)


def describe_cv(report: dict) -> str:
    """How a report was cross-validated, for people: "5-fold CV" or "leave-one-recipe-family-out CV (5 families)"."""
    if report.get("cv", "k-fold") == "k-fold":
        return f"{report['folds']}-fold CV"
    return f"leave-one-recipe-family-out CV ({report['folds']} families)"


def format_sweep(reports: list[dict]) -> str:
    """A layer ranking of sweep reports (best first): layer, method, every metric, shuffled first metric."""
    if not reports:
        return "no reports"
    metrics = list(reports[0]["metrics"])
    width = max(len(r["layer"]) for r in reports)
    lines = [f"{reports[0]['tree']}: {describe_cv(reports[0])}, mean +- SE over folds (best first)",
             f"{'layer':<{width}} {'method':<8} " + " ".join(f"{m:>14}" for m in metrics) + f" {'shuffled':>14}"]
    for r in reports:
        shuffled = r["shuffled"][metrics[0]] if r["shuffled"] else None
        lines.append(f"{r['layer']:<{width}} {r['method']:<8} " + " ".join(f"{_fmt(r['metrics'][m]):>14}" for m in metrics)
                     + f" {_fmt(shuffled):>14}")
    return "\n".join(lines)
