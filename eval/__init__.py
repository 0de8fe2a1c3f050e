"""Evaluation: the lmms-eval model plugin, benchmark suites, leaderboards and ablations."""
