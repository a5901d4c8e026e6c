"""LoRA modifiers: one PEFT adapter per domain trained on Ray Train, scored against the base."""
