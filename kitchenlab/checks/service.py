"""Checks for the exercises of one notebook (filled in with that notebook)."""
