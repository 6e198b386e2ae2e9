"""Inbound adapters: one module per source, each with an explicit table of what it handles."""
