"""runtime/shim."""
