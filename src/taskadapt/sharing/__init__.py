"""Trained models as small, shareable artifacts: adapter-only checkpoints and the Hugging Face hub."""
