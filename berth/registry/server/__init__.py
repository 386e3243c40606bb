"""``berth registry serve``: an OCI Distribution (v1.1) server with its own storage root.

Modules, bottom up: ``names`` (grammar of repository names, tags, digests), ``errors`` (the
spec's error codes), ``config``, ``storage`` (the disk layout and atomic writes),
``uploads`` (blob upload sessions), ``manifests`` (parsing and checks), ``auth`` (htpasswd,
tokens, access rules), ``gc``, ``metrics``. Only ``app`` and the ``h_*`` handler modules and
``serve`` import aiohttp.
"""
