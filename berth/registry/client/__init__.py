"""A registry client (OCI distribution API v2): the ``/v2/`` check, ``WWW-Authenticate``
challenges (Bearer tokens, Basic), manifests, blobs (HEAD, GET, monolithic and chunked
uploads, cross-repository mounts), HTTPS with plain-HTTP fallback for insecure registries.

Synchronous and stdlib-only (``http.client``): every transfer runs in its own thread, which
keeps berthd's start-up free of any HTTP library and lets downloads, hashing, decompression
and unpacking of several layers overlap (all of them release the GIL).
"""
