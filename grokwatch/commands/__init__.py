"""Sub-commands of the grokwatch CLI: one module each, light at import."""
