"""Handing leads to sales reps: owners, notifications, acceptance."""
