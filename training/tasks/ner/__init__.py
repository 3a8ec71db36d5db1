"""NER training: CoNLL columns, a char-CNN + (Bi)RNN tagger with a CRF or softmax head (optionally an
ensemble), entity F1 (seqeval) through the service's own decoding, and the export of the emission graph."""
