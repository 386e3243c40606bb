"""build: the image builder (Dockerfile parser, context, cache, the step executor).

Layering (STYLE.md §2): api -> build -> engine. The parser (dockerfile.py, instructions.py,
dockerignore.py) is pure: no I/O. The builder drives engine/ to run RUN steps and store layers.
"""
