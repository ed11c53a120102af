"""Training and evaluation data: catalogue-backed datasets, transforms and batch samplers."""
