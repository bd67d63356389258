"""Masked 2D/3D pose pretraining (MPM): the network, masking, objective, and its training step and export on
the shared loop (:mod:`training`)."""
