"""Evaluation results as files: a JSON document, a Markdown table and PNG figures."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from pdefm.runtime.files import write_text_atomically

from .metrics import SPECTRAL_BANDS, fields_beaten, not_learned
from .rollout import BLOWN_UP, ROLLOUT_WINDOWS, window_label
from .spectra import SPECTRA_NOTE, spectra_table, spectral_flags
from .verdicts import dataset_verdict, verdict_sentence

YARDSTICKS = ("linear extrapolation", "linear stencil")


def _json_ready(results: dict[str, Any]) -> dict[str, Any]:
    """The results without the arrays kept for figures."""
    out = {}
    for name, r in results.items():
        rollout = {k: v for k, v in r["rollout"].items() if k != "example"}
        out[name] = {**r, "rollout": rollout}
    return out


def mean_sd_cell(values: list[float], digits: int = 4) -> str:
    """A table cell: the value, or mean ± sample standard deviation of several (seeds)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def summary(results: dict[str, Any]) -> dict[str, float]:
    """Means over datasets of the headline numbers."""
    names = sorted(results)
    out = {"one_step_vrmse": float(np.mean([results[n]["one_step"]["vrmse"] for n in names])),
           "persistence_vrmse": float(np.mean([results[n]["one_step"]["persistence_vrmse"] for n in names]))}
    for window in ROLLOUT_WINDOWS:
        label = window_label(window)
        values = [results[n]["rollout"]["vrmse_windows"][label] for n in names if label in results[n]["rollout"]["vrmse_windows"]]
        if len(values) == len(names):
            out[f"rollout_{label}"] = float(np.mean(values))
    return out


def markdown_table(results: dict[str, Any]) -> str:
    """Per dataset: one-step and rollout VRMSE, each next to persistence's (in parentheses), the linear yardsticks'
    one-step VRMSE where they were measured, and spectral bands."""
    labels = [window_label(w) for w in ROLLOUT_WINDOWS]
    yardsticks = [y for y in YARDSTICKS if any(y in r.get("yardsticks", {}) for r in results.values())]
    head = (["dataset", "one-step VRMSE (persistence)", *[f"one-step {y}" for y in yardsticks],
             "fields beating persistence", *[f"rollout {l} (persistence)" for l in labels],
             *[f"spectral {b}" for b in SPECTRAL_BANDS]])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sorted(results):
        one, rolled = results[name]["one_step"], results[name]["rollout"]
        model, reference = rolled["vrmse_windows"], rolled.get("persistence_vrmse_windows", {})
        beaten, n_fields, _ = fields_beaten(one)
        measured = results[name].get("yardsticks", {})
        cells = [name, f"{one['vrmse']:.4f} ({one['persistence_vrmse']:.4f})",
                 *[f"{measured[y]['vrmse']:.4f}" if y in measured else "-" for y in yardsticks],
                 f"{beaten} of {n_fields}",
                 *[(f"{model[l]:.4f}" + (f" ({reference[l]:.4f})" if l in reference else "")) if l in model else "-"
                   for l in labels],
                 *[f"{one[f'spectral_{b}']:.4f}" for b in SPECTRAL_BANDS]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def change_cells(one: dict[str, Any], i: int) -> str:
    ratio = one.get("change_ratio_per_field", [])
    correlation = one.get("change_correlation_per_field", [])
    cell = lambda values: f"{values[i]:.2f}" if i < len(values) else "-"  # noqa: E731
    return f"{cell(ratio)} | {cell(correlation)}"


CHANGE_COLUMNS_NOTE = ("Change columns: the predicted change over the last input frame against the true change, per "
                       "field (medians over windows): the ratio of their spatial standard deviations (1 moves the "
                       "field as much as the truth does, 0 predicts no change) and their correlation (1 moves it "
                       "the right way).")


def per_field_table(results: dict[str, Any]) -> str:
    lines = ["| dataset | field | one-step VRMSE | NRMSE | RMSE | persistence VRMSE | beats persistence | "
             "change std ratio | change correlation |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in sorted(results):
        one = results[name]["one_step"]
        for i, field in enumerate(results[name]["field_names"]):
            model, persistence = one["vrmse_per_field"][i], one["persistence_vrmse_per_field"][i]
            lines.append(f"| {name} | {field} | {model:.4f} | {one['nrmse_per_field'][i]:.4f} | "
                         f"{one['rmse_per_field'][i]:.4g} | {persistence:.4f} | {'yes' if model < persistence else 'no'} | "
                         f"{change_cells(one, i)} |")
    return "\n".join(lines)


def vrmse_cell(value: float) -> str:
    """A VRMSE table cell: four decimals, or "blown up" past `BLOWN_UP` (a diverged linear rollout)."""
    return "blown up" if not value < BLOWN_UP else f"{value:.4f}"


def yardstick_rollout_table(results: dict[str, Any]) -> str:
    """Per dataset and rollout window: the model, persistence and each linear yardstick (`inf`: the rollout blew
    up), means over the rollout's starts."""
    labels = [window_label(w) for w in ROLLOUT_WINDOWS]
    lines = ["| dataset | forecast | " + " | ".join(f"rollout {l}" for l in labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    for name in sorted(results):
        rolled = results[name]["rollout"]
        rows = [("PDE-FM", rolled["vrmse_windows"]), ("persistence", rolled.get("persistence_vrmse_windows", {}))]
        rows += [(y, results[name]["yardsticks"][y]["vrmse_windows"]) for y in YARDSTICKS
                 if y in results[name].get("yardsticks", {})]
        for label, windows in rows:
            lines.append(f"| {name} | {label} | " + " | ".join(vrmse_cell(windows[l]) if l in windows else "-"
                                                             for l in labels) + " |")
    return "\n".join(lines)


def verdict_lines(results: dict[str, Any]) -> list[str]:
    """One verdict line per dataset (`verdicts.dataset_verdict`)."""
    return [verdict_sentence(name, dataset_verdict(r["one_step"], r.get("rollout"), r.get("yardsticks"),
                                                   r.get("field_names")))
            for name, r in sorted(results.items())]


def learning_verdict(one_step: dict[str, dict[str, Any]]) -> str:
    """One sentence: which datasets the model has not learned (one-step VRMSE within 10% of persistence's)."""
    missed = not_learned(one_step)
    if not missed:
        return "Every dataset is learned: the one-step VRMSE is more than 10% below persistence's on each."
    return (f"**Not learned**: {', '.join(missed)} (one-step VRMSE within 10% of persistence's, or above it): the "
            "model predicts little of how these fields change; see the change columns per field.")


def _slice(frame: np.ndarray) -> tuple[np.ndarray, str]:
    """A 2D view of one channel and what it shows: 3D fields are cut through the middle of the last axis."""
    if frame.ndim == 2:
        return frame, ""
    middle = frame.shape[-1] // 2
    return frame[..., middle], f"index {middle} of {frame.shape[-1]}"


def plot_example(path: str, name: str, result: dict[str, Any], fields: list[str] | None = None) -> str | None:
    """Truth, prediction and error of the first test trajectory's rollout at three steps, for every field (or the
    named ones), with axis coordinates; a 3D field is shown as its slice through the middle of the last axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    example = result["rollout"].get("example")
    if example is None:
        return None
    truth, prediction = example["truth"], example["prediction"]  # [steps, *space, C]
    names = result["field_names"]
    channels = [i for i, n in enumerate(names) if fields is None or n in fields or n.rsplit("_", 1)[0] in fields]
    if not channels:
        return None
    axes_names = result.get("spatial_dims") or ["x", "y", "z"][: truth.ndim - 2]
    coordinates = example.get("coordinates")
    extent = None
    if coordinates is not None:
        extent = [float(coordinates[0][0]), float(coordinates[0][-1]), float(coordinates[1][0]), float(coordinates[1][-1])]
    steps = sorted({0, truth.shape[0] // 2, truth.shape[0] - 1})
    fig, axes = plt.subplots(len(channels) * 3, len(steps), figsize=(3.2 * len(steps), 2.7 * 3 * len(channels)),
                             squeeze=False)
    where = ""
    for fi, c in enumerate(channels):
        low, high = float(truth[..., c].min()), float(truth[..., c].max())
        for si, s in enumerate(steps):
            (t, where), (p, _) = _slice(truth[s, ..., c]), _slice(prediction[s, ..., c])
            bound = float(np.abs(p - t).max()) or 1.0  # a symmetric scale: zero error is white
            for row, (image, title, kwargs) in enumerate(
                ((t, "truth", {"vmin": low, "vmax": high}), (p, "prediction", {"vmin": low, "vmax": high}),
                 (p - t, "error", {"cmap": "RdBu_r", "vmin": -bound, "vmax": bound}))):
                ax = axes[3 * fi + row, si]
                im = ax.imshow(image.T, origin="lower", extent=extent, aspect="auto", **kwargs)
                ax.set_title(f"{names[c]} {title}, step {s + 1}", fontsize=8)
                ax.set_xlabel(axes_names[0], fontsize=7, labelpad=1)
                ax.set_ylabel(axes_names[1], fontsize=7, labelpad=1)
                ax.tick_params(labelsize=6)
                fig.colorbar(im, ax=ax, fraction=0.046)
    cut = f"; 3D fields cut at {axes_names[2]} {where}" if where and len(axes_names) > 2 else ""
    fig.suptitle(f"{name}: rollout of the first test trajectory{cut}")
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_rollout_curves(path: str, curves: dict[str, dict[str, list[float]]], title: str) -> str:
    """VRMSE against rollout step: `curves[panel][line] = values`, one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted(curves)
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        for label, values in sorted(curves[panel].items()):
            ax.plot(np.arange(1, len(values) + 1), values, label=label,
                    **({"linestyle": "--", "color": "grey"} if label == "persistence" else {}))
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("rollout step")
        ax.set_ylabel("VRMSE")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_evaluation(out_dir: str, results: dict[str, Any], info: dict[str, Any], figures: bool = True,
                     figure_fields: list[str] | None = None) -> dict[str, str]:
    """`evaluation.json`, `evaluation.md` and (with `figures`) `figures/*.png` in `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"json": os.path.join(out_dir, "evaluation.json"), "markdown": os.path.join(out_dir, "evaluation.md")}
    document = {**info, "summary": summary(results), "datasets": _json_ready(results)}
    write_text_atomically(paths["json"], json.dumps(document, indent=2))
    starts = {r["rollout"].get("starts", r["rollout"].get("trajectories")) for r in results.values()}
    text = [f"# Evaluation of `{info.get('model')}`", "", f"Split `{info.get('split')}` of `{info.get('data')}`; "
            "VRMSE as The Well defines it, on denormalised fields; rollouts feed predictions back, from starts "
            f"spread over every trajectory ({', '.join(str(s) for s in sorted(starts))} per dataset; means over "
            "them). In parentheses: persistence (the last input frame held), which a useful model beats; the linear "
            "yardsticks (linear extrapolation, and a least-squares 3x3 stencil fitted on the train split) say how "
            "much of a step is linear. Spectral columns: error energy over true energy per wavenumber band (one "
            "step).", "", f"Command: `{info.get('command')}`", "", markdown_table(results), "",
            "Means over datasets: " + ", ".join(f"{k} {v:.4f}" for k, v in document["summary"].items()), "",
            "## Verdicts", "", "Learned: beats persistence and the linear stencil one step ahead, and stays below "
            "persistence at every rollout step.", "", *verdict_lines(results), ""]
    if any("yardsticks" in r for r in results.values()):
        text += ["## Rollouts against the linear yardsticks", "", yardstick_rollout_table(results), ""]
    text += ["## Per field", "", CHANGE_COLUMNS_NOTE, "", per_field_table(results), ""]
    spectra = spectra_table(results)
    if spectra:
        text += ["## Spectra over the rollout", "", SPECTRA_NOTE, "", spectra, ""]
        for name, r in sorted(results.items()):
            flags = spectral_flags(r["rollout"], r.get("field_names") or [])
            text += [f"- {name}: " + ("; ".join(flags) if flags else "no band flagged")]
        text.append("")
    if figures:
        fig_dir = os.path.join(out_dir, "figures")
        os.makedirs(fig_dir, exist_ok=True)
        for name, r in sorted(results.items()):
            if plot_example(os.path.join(fig_dir, f"{name}_rollout.png"), name, r, figure_fields):
                text.append(f"![{name}](figures/{name}_rollout.png)")
        curves = {name: {"model": r["rollout"]["vrmse_per_step"],
                         **({"persistence": r["rollout"]["persistence_vrmse_per_step"]}
                            if "persistence_vrmse_per_step" in r["rollout"] else {})} for name, r in results.items()}
        plot_rollout_curves(os.path.join(fig_dir, "vrmse_per_step.png"), curves, f"VRMSE against rollout step: {info.get('model')}")
        text += ["", "![VRMSE against rollout step](figures/vrmse_per_step.png)", ""]
        paths["figures"] = fig_dir
    write_text_atomically(paths["markdown"], "\n".join(text))
    return paths

