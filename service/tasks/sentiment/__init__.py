"""Sentiment (many-to-one): a text becomes token ids, one ONNX graph gives class probabilities, the
answer is the most probable label with every label's probability."""
