"""NER tagging (many-to-many, equal length): a text becomes tokens with character offsets, the graph
gives per-token emission scores, and numpy decoding (CRF Viterbi or softmax) gives BIO tags and entity
spans with offsets into the original text."""
