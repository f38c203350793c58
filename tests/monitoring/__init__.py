"""Tests of the drift monitor (monitoring/)."""
