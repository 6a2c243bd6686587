"""bench/compare_runs.py: runs side by side, every number read from their report.json and validation_curve.json."""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import compare_runs  # noqa: E402


def write_run(folder, test, valid):
    os.makedirs(folder)
    datasets = {n: {"vrmse": v, "persistence_vrmse": 0.5, "vrmse_per_field": [v], "change_ratio_per_field": [0.25],
                    "field_names": ["u"]} for n, v in test.items()}
    with open(os.path.join(folder, "report.json"), "w") as f:
        json.dump({"datasets": datasets, "steps": 10, "train_seconds": 3.0}, f)
    with open(os.path.join(folder, "validation_curve.json"), "w") as f:
        json.dump({"persistence": {n: 0.4 for n in valid},
                   "points": [{"valid_vrmse": {n: 0.4 for n in valid}}, {"valid_vrmse": valid}]}, f)
    return str(folder)


def test_tables_read_the_runs(tmp_path, capsys):
    a = write_run(tmp_path / "a", {"x": 0.25, "y": 0.4}, {"x": 0.1, "y": 0.44})
    b = write_run(tmp_path / "b", {"x": 0.1, "y": 0.5}, {"x": 0.2, "y": 0.3})
    assert compare_runs.main([f"A={a}", f"B={b}"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[2].startswith("| A | 10 | 3 | 0.2500 | 0.4000 | 0.650 | 1 of 2 |")  # mean of 0.5 and 0.8
    # Validation against test, the last curve point over persistence: x is 0.25 of it on valid, 0.5 on test.
    assert compare_runs.main(["--valid", f"A={a}", f"B={b}"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "| dataset | A valid | A test | B valid | B test |"
    assert rows[2] == "| x | 0.25 | 0.50 | 0.50 | 0.20 |" and rows[3] == "| y | 1.10 | 0.80 | 0.75 | 1.00 |"
    assert compare_runs.main(["--change", f"A={a}"]) == 0
    assert "| x | u | 0.25 |" in capsys.readouterr().out
    assert compare_runs.main(["oops"]) == 2
