"""build.dockerignore: Docker's .dockerignore format and matching, as the builder uses it.
The one implementation lives in berth.schema.dockerignore (the client filters contexts with
it too); this module is its name on the build side."""

from berth.schema.dockerignore import (DockerignoreError, Matcher, Pattern, clean, compile_pattern,
                                       parse)

__all__ = ["DockerignoreError", "Matcher", "Pattern", "clean", "compile_pattern", "parse"]
