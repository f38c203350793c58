"""Serving the production version over HTTP: batched routed answers, a traffic log, hot reload."""
