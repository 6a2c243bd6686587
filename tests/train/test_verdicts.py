"""Verdicts: learned only when the model beats persistence and the linear stencil one step ahead and stays below
persistence over the rollout; frozen fields and washed-out rollouts are named."""

from pdefm.train.evaluation.verdicts import dataset_verdict, verdict_sentence


def one_step(vrmse=0.1, persistence=0.2, ratios=(0.9, 0.3)):
    return {"vrmse": vrmse, "persistence_vrmse": persistence, "vrmse_per_field": [vrmse] * 2,
            "change_ratio_per_field": list(ratios)}


ROLLOUT = {"vrmse_per_step": [0.1, 0.5, 1.2], "persistence_vrmse_per_step": [0.2, 0.6, 1.3]}


def test_beating_persistence_but_not_the_stencil_is_not_learned():
    verdict = dataset_verdict(one_step(), ROLLOUT, {"linear stencil": {"vrmse": 0.05, "diverged_at_step": 3}},
                              ["u", "p"])
    assert verdict["beats_persistence"] and verdict["beats_linear_stencil"] is False and not verdict["learned"]
    assert verdict["frozen_fields"] == ["p"] and verdict["washes_out_from_step"] == 3
    line = verdict_sentence("flow", verdict)
    assert line.startswith("- flow: **not learned**: does not beat the linear stencil one step ahead")
    assert "frozen fields (predicted change under 0.5 of the true one): p" in line
    assert "VRMSE >= 1 from rollout step 3" in line and "blows up at step 3" in line


def test_learned_needs_every_part_and_says_so_when_a_yardstick_is_missing():
    learned = dataset_verdict(one_step(ratios=(0.9, 0.8)), ROLLOUT, {"linear stencil": {"vrmse": 0.2}})
    assert learned["learned"] and verdict_sentence("a", learned).startswith("- a: learned")
    above = {"vrmse_per_step": [0.1, 0.7], "persistence_vrmse_per_step": [0.2, 0.6]}
    assert not dataset_verdict(one_step(), above, {"linear stencil": {"vrmse": 0.2}})["learned"]
    unmeasured = dataset_verdict(one_step())
    assert unmeasured["learned"] is False and "not every yardstick was measured" in verdict_sentence("a", unmeasured)
