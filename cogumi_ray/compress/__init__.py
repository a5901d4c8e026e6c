"""Model compression: lossless packing of weight files and llama.cpp K-quants of GGUF models."""
