"""Training on Ray Train: full-precision SFT of the base, backends, LoRA wrapping, checkpoints."""
