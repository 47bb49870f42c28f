"""The engine: training one variant. Its wiring (``variant``), the training loop
(``loop``), the steps of an epoch and evaluations (``trainer``), the losses, the fine-tuning
recipe, the evaluation protocol (``evaluate``), models and heads, checkpoints, devices, DDP."""
