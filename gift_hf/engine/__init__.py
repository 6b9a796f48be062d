"""The training engine: losses, the one configuration (``GIFTConfig``), the training step,
``GIFTTrainer`` (K students at once) and its checkpoints."""
