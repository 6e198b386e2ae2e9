"""Yuchi's shell: composition root and infrastructure."""
