"""Generation engines (HF, llama.cpp, OpenAI-compatible HTTP, vLLM) and Ray Data batch generation."""
