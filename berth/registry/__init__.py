"""Registries: the client (pull, push) and the server (``berth registry serve``)."""
