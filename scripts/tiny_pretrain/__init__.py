"""Pieces of the `tiny` base pretraining script (scripts/pretrain_tiny.py): configs, data, stages."""
