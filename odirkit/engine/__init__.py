"""The engine: devices, seeding, checkpoints, the training loop and runs."""
