"""Translation training: parallel text, SentencePiece subwords, a bi-RNN encoder with a Luong-attention
decoder, BLEU and chrF (sacrebleu) through the service's own search, and the export of the encoder and
decoder-step graphs."""
