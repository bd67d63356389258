"""The training machinery both stages share, below them (``finetune -> pretrain -> training -> ingest``): the one
loop (:mod:`training.loop`), its DeepSpeed plumbing and shipped DeepSpeed JSONs (:mod:`training.engine`,
``training/deepspeed/``), the run log (:mod:`training.runlog`) and the one configuration mechanism
(:mod:`training.settings`)."""
