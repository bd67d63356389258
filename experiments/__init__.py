"""Experiments above both stages: the data-scaling ablation (:mod:`experiments.ablate`), which runs
pretraining and finetuning through their public commands and reads finetuning's results through the typed
:func:`finetune.evaluate.read_h36m_summary`; the VideoPose3D comparison (:mod:`experiments.videopose3d`); and
lifting in the wild checked against truth (:mod:`experiments.wild`, with the detector-file writers of
:mod:`experiments.detector_files`). Only tests import this package."""
