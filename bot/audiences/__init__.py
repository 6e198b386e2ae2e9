"""Audiences: saved segments (the one condition language compiled to SQL), their members."""
