"""runtime/cgroups."""
