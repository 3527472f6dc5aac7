"""Widgets of the console's main and detail screens."""
