"""Encoder pretraining by cluster discrimination (`ovmllm pretrain-encoder`, PAPER.md section 4):

config.py   the typed config (encoder, sources and heads, views, media, optimisation)
labels.py   labelled samples from the concept bank's label folders
data.py     global sample order, keyed video views, each rank's slice of a global batch
encoder.py  OV-Encoder with its pooling head, its optimizer, its export
trainer.py  the step and the loop (centres outside the engine, their own optimizer)
recipe.py   top to bottom: load → data → engine → resume → loop → save
"""
