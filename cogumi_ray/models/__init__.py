"""Models: tiny Llama + tokenizer factory, loading HF folders, the one chat template.

GGUF export lives in `cogumi_ray.export`."""
