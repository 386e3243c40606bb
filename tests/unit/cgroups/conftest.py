from cgroupfs_fake import v1_layout, v1_root, v2_root  # noqa: F401 (fixtures)
