"""Plain torch.nn architectures (no Lightning import)."""
