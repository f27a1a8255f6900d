"""Small shared helpers (environment report, input validation)."""
