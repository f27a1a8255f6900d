"""Model families, one folder each, in transformers' file style (see docs/ARCHITECTURE.md)."""
