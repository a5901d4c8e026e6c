"""Model format export: HF Llama folders to GGUF (for llama.cpp generation, compression, serving)."""
