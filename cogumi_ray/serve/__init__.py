"""Serving: the OpenAI-compatible Ray Serve graph (ingress -> router -> base + LoRA modifiers)."""
