"""Model cards (README.md with Hub metadata) for saved models and adapters."""

from __future__ import annotations

import os
from typing import Any

import yaml

from ..evaluation.metrics import fields_beaten


def metrics_table(report: dict[str, dict[str, Any]]) -> str:
    """One-step VRMSE per dataset next to persistence's, with the per-field verdict (a dataset can beat persistence
    on average while one of its fields does not)."""
    lines = ["| dataset | one-step VRMSE | persistence VRMSE | fields beating persistence | windows |",
             "|---|---|---|---|---|"]
    for name, r in sorted(report.items()):
        beaten, total, losing = fields_beaten(r)
        verdict = f"{beaten} of {total}" + (f" (not {', '.join(losing)})" if losing else "")
        lines.append(f"| {name} | {r['vrmse']:.4f} | {r['persistence_vrmse']:.4f} | {verdict} | {r['windows']} |")
    return "\n".join(lines)


def write_model_card(folder: str, *, title: str, datasets: list[str], description: str,
                     report: dict[str, dict[str, Any]] | None = None, base_model: str | None = None,
                     extra_tags: list[str] | None = None, command: str | None = None,
                     library_name: str = "transformers") -> str:
    metadata = {
        "library_name": library_name,
        "pipeline_tag": "other",
        "tags": ["pde", "physics", "scientific-ml", "pdefm", "the-well", *(extra_tags or [])],
        "datasets": datasets,
    }
    if base_model:
        metadata["base_model"] = base_model
    if report:
        metadata["model-index"] = [{"name": title, "results": [
            {"task": {"type": "other", "name": "next-step prediction"}, "dataset": {"name": name, "type": name},
             "metrics": [{"type": "vrmse", "name": "one-step VRMSE", "value": round(float(r["vrmse"]), 6)}]}
            for name, r in sorted(report.items())]}]
    parts = ["---", yaml.safe_dump(metadata, sort_keys=False).strip(), "---", "", f"# {title}", "", description, ""]
    if report:
        parts += ["## Evaluation", "", "One-step VRMSE (The Well's definition, lower is better) against predicting the "
                  "last input frame, on the datasets' held-out split" + (f", measured by `{command}`" if command else "") + ":",
                  "", metrics_table(report), ""]
    parts += [
        "## Intended use",
        "",
        "Next-step and autoregressive prediction of the fields of the physical systems above, in The Well's layout "
        "(`input_fields [batch, T_in, *space, C]`); a starting point for finetuning on new systems "
        "(`pdefm.train.finetune`, LoRA adapters per domain).",
        "",
        "## Limits",
        "",
        "Trained on the listed datasets only, at their resolutions and parameter ranges; predictions outside them, "
        "and long rollouts, degrade. Not a substitute for a validated solver where accuracy matters.",
        "",
        "## Loading",
        "",
        "```python",
        *(["from pdefm.train.model_files.loading import load_pdefm  # pip install pdefm",
           f"model = load_pdefm(\"{base_model or '<the base model folder>'}\", adapter=\"<this repo or folder>\")"] if library_name == "peft" else
          ["from transformers import AutoModel",
           "model = AutoModel.from_pretrained(\"<this repo or folder>\", trust_remote_code=True)"]),
        "```",
        "",
    ]
    path = os.path.join(folder, "README.md")
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path
