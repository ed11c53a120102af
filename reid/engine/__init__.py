"""Training, descriptor extraction and checkpointing (the engine; data and evaluation live apart)."""
