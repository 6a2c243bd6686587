"""Evaluation as The Well measures its baselines: metrics, fixed evaluation windows, the forecaster interface,
rollouts per window and the reports written from them."""
