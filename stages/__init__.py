"""Thin DVC stage entry points: each reads its own params section and calls the core library."""
