"""On-disk state: the layout (paths.py), atomic writes and locks."""
