"""Hand-written operators (pure torch, no Lightning): im2col convolution, attention, windows."""
