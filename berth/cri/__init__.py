"""The Kubernetes CRI v1 (gRPC): a second skin over engine/, like api/ is for the Docker API.

A kubelet pointed at ``unix://<exec-root>/cri.sock`` drives berth's own engine here: pod
sandboxes and their containers are engine containers (labelled ``io.kubernetes.*``, so
``docker ps -a`` lists them), images are the engine's image store (``docker images`` lists
what the kubelet pulled). ``server.start`` is imported lazily by berthd, so that a berthd
without the ``cri`` extra (grpcio and the CRI bindings) starts as before.
"""

import os

# gRPC's fork handlers (on by default) may abort a process that forks while gRPC threads are
# busy. berthd never forks with gRPC loaded in a way that needs them (its children exec at once),
# so they are turned off before grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
