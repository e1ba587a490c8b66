"""Lightning callbacks: submission writing, adversarial training and evaluation, and others."""
