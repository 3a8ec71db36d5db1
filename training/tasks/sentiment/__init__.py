"""Sentiment training: labelled texts, an RNN classifier (optionally an ensemble of members averaged in
one graph), accuracy on dev for selection, and the export of the ``probabilities`` graph."""
