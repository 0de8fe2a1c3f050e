"""Training data: LLaVA rows in Arrow, reproducible mixtures, sample building, packing."""
