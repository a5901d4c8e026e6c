"""cogumi_ray: turn an open base LLM into a small, specialised, cheaply served model system on Ray."""

__version__ = "0.1.0"
