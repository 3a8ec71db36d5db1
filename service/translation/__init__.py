"""Translation decoding (numpy greedy and beam search) and request models."""
