"""bertkit: BERT end to end, with Hugging Face-format checkpoints."""
