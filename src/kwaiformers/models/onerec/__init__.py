"""OneRec (V1) models, semantic-ID item tokenizer and item index (see docs/recommendation.md)."""
