"""Answers and rewrites compiled once per config generation into a route (DESIGN §7)."""
