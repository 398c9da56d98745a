"""tuneahead-ray: predict the score of an LLM fine-tuning run before training it, at cluster scale."""

__version__ = "0.1.0"
