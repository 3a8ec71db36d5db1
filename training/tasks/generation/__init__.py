"""Generation training: a character language model on plain text, windows with carried state, loss per
character on dev, and the export of the prefill and step graphs (weights stored once)."""
