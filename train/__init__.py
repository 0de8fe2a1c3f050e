"""Training stages (align, instruct) on the assembled model, and the encoder-pretraining
objective (cluster discrimination with sharded class centres: cluster_loss.py, centres.py)."""
