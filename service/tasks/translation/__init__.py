"""Translation (many-to-many, unequal length): SentencePiece subwords in, an encoder graph and a
decoder-step graph with attention, greedy or beam search in numpy, detokenized text out."""
