"""Compat tests: one test asserts one Docker behaviour, naming the Docker and API version it comes from."""
