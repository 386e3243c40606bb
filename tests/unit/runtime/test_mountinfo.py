"""mountinfo(5) as data: the mount a path is on (the longest mount point, the last of a stack),
its propagation from the optional fields, escaped mount points."""

from __future__ import annotations

import pytest

from berth.runtime.mountinfo import mount_of

TABLE = """\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
45 27 254:0 /run/netns /run/netns rw,relatime shared:1 - ext4 /dev/vda rw
50 27 0:40 / /mnt/my\\040dir rw master:7 - tmpfs tmpfs rw
51 50 0:41 / /mnt/my\\040dir/sub rw shared:9 master:7 - tmpfs tmpfs rw
52 27 0:42 / /run/netns rw shared:3 - tmpfs tmpfs rw
"""


def test_mount_of() -> None:
    root = mount_of("/var/lib/x", TABLE)
    assert (root.mountpoint, root.shared, root.slave) == ("/", False, False)
    assert mount_of("/run/netns/a", TABLE).mount_id == 52          # the last of a stack
    assert mount_of("/run/netnsx", TABLE).mountpoint == "/"        # a prefix is not a parent
    d = mount_of("/mnt/my dir/f", TABLE)
    assert (d.mountpoint, d.shared, d.slave) == ("/mnt/my dir", False, True)
    sub = mount_of("/mnt/my dir/sub", TABLE)
    assert (sub.shared, sub.slave) == (True, True)


def test_no_mount() -> None:
    with pytest.raises(ValueError):
        mount_of("/x", "")
