"""The whole on-disk layout. Every path berth uses comes from here.

::

    <data-root>/                      default /var/lib/berth, survives reboots
      berth.lock                      flock held by the one berthd using this root
      berth.db                        SQLite (WAL): images, tags, layers, containers,
                                      networks, sandboxes, volumes, container_mounts
      image/
        layers/<chain-id hex>/diff/   one unpacked layer, an overlay lower dir, shared
        l/<short>                     short symlink -> ../layers/<chain>/diff (keeps the
                                      overlay mount options under a page)
        tmp/                          staging for imports; swept at start
      containers/<id>/
        config.json                   OCI runtime spec (the bundle; root.path = rootfs)
        rootfs/                       mount point of the overlay (inside the container's
                                      mount namespace only)
        upper/ work/                  the writable layer
        hostname hosts resolv.conf    bind-mounted into the container
        <id>-json.log                 json-file log, written by the shim
        exit.json                     written atomically by the shim when init exits
      trash/<name>.<random>/          a removed container's directory, deleted in the
                                      background (state/trash.py); swept at start
      quarantine/                     what berthd could not read (records, berth.db, exit.json)
      volumes/<name>/_data/           a volume's content (local driver, no mount options)
      build/
        tmp/<build id>/               one build's context (extracted), secrets; swept at start
        mounts/<hash of id>/          RUN --mount=type=cache directories, kept between builds
      runtime/
        seccomp/<sha256>.bpf          compiled seccomp programs, by profile digest
      cni/results/<id>-<ifname>.json  a pod's CNI result and config, cached for DEL and CHECK

    <exec-root>/                      default /run/berth, wiped at boot
      berth.sock                      the API socket
      forkserver.sock                 berthd <-> its shim fork server
      cri.sock                        the Kubernetes CRI (gRPC), unless --cri-socket says
      shims/<id>.sock                 one shim's control socket (paths past the AF_UNIX
                                      limit are reached via /proc/self/fd: state/sockaddr.py)
      runtimes/<name>/                an external OCI runtime's state (its --root: runc, crun)
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple


LAYER_DIR_MODE = 0o701  # image/layers/<chain>/: only its diff/ is reached, by path (Docker's overlay2/<id>)
DB_MODE = 0o600


class DataRoot(NamedTuple):
    root: Path

    @property
    def lock(self) -> Path:
        return self.root / "berth.lock"

    @property
    def db(self) -> Path:
        return self.root / "berth.db"

    @property
    def layers(self) -> Path:
        return self.root / "image" / "layers"

    @property
    def short_links(self) -> Path:
        return self.root / "image" / "l"

    @property
    def image_tmp(self) -> Path:
        return self.root / "image" / "tmp"

    @property
    def cni_results(self) -> Path:
        return self.root / "cni" / "results"

    def layer_dir(self, chain_hex: str) -> Path:
        return self.layers / chain_hex

    def container(self, cid: str) -> ContainerDir:
        return ContainerDir(self.root / "containers" / cid, cid)

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def trash(self) -> Path:
        return self.root / "trash"

    @property
    def build_tmp(self) -> Path:
        return self.root / "build" / "tmp"

    @property
    def build_mounts(self) -> Path:
        return self.root / "build" / "mounts"

    @property
    def seccomp_cache(self) -> Path:
        return self.root / "runtime" / "seccomp"

    def make(self) -> None:
        for p in (self.layers, self.short_links, self.image_tmp, self.containers, self.seccomp_cache,
                  self.build_tmp, self.build_mounts, self.volumes, self.trash):
            p.mkdir(parents=True, exist_ok=True)
        self.secure()

    def modes(self) -> list[tuple[Path, int]]:
        """Directory modes, as dockerd sets them since 20.10.9 (CVE-2021-41091).

        Host users may traverse the root (o+x, like Docker's 0711) but not list it, and may
        neither list nor traverse image layers or containers' writable layers: a setuid file
        in an image must not become a setuid file any host user can run.
        """
        return [(self.root, 0o701), (self.root / "image", 0o710), (self.layers, 0o710),
                (self.short_links, 0o710), (self.containers, 0o710), (self.volumes, 0o701),
                (self.root / "build", 0o700), (self.root / "runtime", 0o700), (self.trash, 0o700)]

    def secure(self) -> None:
        """Apply modes() and LAYER_DIR_MODE, also to a data root an older berthd made."""
        for p, mode in self.modes():
            p.chmod(mode)
        for d in self.layers.iterdir():
            d.chmod(LAYER_DIR_MODE)
        # The database holds container configs (their Env too): root's alone, fixed here before
        # berthd answers at all (its tables are opened later, off the event loop).
        for f in (self.db, Path(f"{self.db}-wal"), Path(f"{self.db}-shm")):
            if f.exists():
                f.chmod(0o600)


class ContainerDir(NamedTuple):
    root: Path
    cid: str

    @property
    def spec(self) -> Path:
        return self.root / "config.json"

    @property
    def rootfs(self) -> Path:
        return self.root / "rootfs"

    @property
    def upper(self) -> Path:
        return self.root / "upper"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def hostname(self) -> Path:
        return self.root / "hostname"

    @property
    def hosts(self) -> Path:
        return self.root / "hosts"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"

    @property
    def shm(self) -> Path:
        """A CRI pod's /dev/shm, mounted here for its sandbox (berth/engine/pod_shm.py)."""
        return self.root / "shm"

    @property
    def log(self) -> Path:
        return self.root / f"{self.cid}-json.log"

    @property
    def exit(self) -> Path:
        return self.root / "exit.json"


class ExecRoot(NamedTuple):
    root: Path

    @property
    def forkserver(self) -> Path:
        return self.root / "forkserver.sock"

    @property
    def shims(self) -> Path:
        return self.root / "shims"

    def shim_socket(self, cid: str) -> Path:
        return self.shims / f"{cid}.sock"

    def runtime_root(self, name: str) -> Path:
        return self.root / "runtimes" / name

    @property
    def cri_socket(self) -> Path:
        return self.root / "cri.sock"

    def make(self) -> None:
        self.shims.mkdir(parents=True, exist_ok=True)
