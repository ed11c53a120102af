"""Figures of a trained re-ID model: retrieval grids, part attention and training curves."""
