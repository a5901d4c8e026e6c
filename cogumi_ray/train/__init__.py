"""Training on Ray Train: full-precision SFT of the base, LoRA modifiers, backends."""
