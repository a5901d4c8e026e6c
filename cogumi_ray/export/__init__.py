"""Model format export: HF Llama folders to GGUF, and PEFT LoRA adapters to llama.cpp LoRA GGUFs
(for llama.cpp generation, compression, serving)."""
