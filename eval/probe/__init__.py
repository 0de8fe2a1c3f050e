"""Attentive-probe evaluation (`ovmllm probe`): a frozen encoder, an attention-pooling classifier
trained on its cached features, codec patches against dense frames at equal patch budgets.

lists.py (video lists) → encoder.py (the frozen tower, its final features) → cells.py (what a
cell feeds it) → features.py (extraction into memory-mapped stores) → head.py / train.py (the
classifier and its training) → report.py (CSV, table, figure); run.py runs them in that order.
"""
