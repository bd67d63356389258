"""Experiments above both stages: the data-scaling ablation (:mod:`experiments.ablate`), which runs
pretraining and finetuning through their public commands and reads finetuning's results through the typed
:func:`finetune.evaluate.read_h36m_summary`. Nothing imports this package."""
