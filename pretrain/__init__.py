"""Masked 2D/3D pose pretraining (MPM): the network, masking, objective and the DeepSpeed trainer."""
