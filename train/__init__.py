"""Training stages (align, instruct) on the assembled model."""
