"""Pieces of the `tiny` base pretraining (scripts/pretrain_tiny.py runs them): configs, data, stages,
the weight average and the motion caption."""
