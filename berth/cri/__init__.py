"""The Kubernetes CRI v1 (gRPC): a second skin over engine/, like api/ is for the Docker API.

A kubelet pointed at ``unix://<exec-root>/cri.sock`` drives berth's own engine here: pod
sandboxes and their containers are engine containers (labelled ``io.kubernetes.*``, so
``docker ps -a`` lists them), images are the engine's image store (``docker images`` lists
what the kubelet pulled). ``server.start`` is imported lazily by berthd, so that a berthd
without the ``cri`` extra (grpcio and the CRI bindings) starts as before.
"""
