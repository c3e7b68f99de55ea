"""Nerfstudio method configurations (entry points)."""
