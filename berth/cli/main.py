"""``berth``: the docker-compatible command line.

Start-up is kept small on purpose: this module imports only ``os`` and ``sys``; a command's
module (and its flag spec) is imported only when that command runs. ``COMMANDS`` maps each
command name to ``(module, function-suffix)``; the module defines ``spec_<suffix>()`` returning
its ``Spec`` and ``run_<suffix>(cli, opts, args)`` returning the exit code.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.client.host import TLSFlags

_C = "berth.cli.cmd_container"
_L = "berth.cli.cmd_lifecycle"
_I = "berth.cli.cmd_image"
_S = "berth.cli.cmd_system"
_R = "berth.cli.cmd_run"
_A = "berth.cli.cmd_attach"
_O = "berth.cli.cmd_ops"
_CP = "berth.cli.cmd_cp"
_D = "berth.cli.cmd_distribution"
_F = "berth.cli.cmd_imagefiles"

COMMANDS: dict[str, tuple[str, str]] = {
    "version": (_S, "version"),
    "info": (_S, "info"),
    "inspect": (_S, "inspect"),
    "images": (_I, "images"),
    "import": (_I, "import"),
    "tag": (_I, "tag"),
    "rmi": (_I, "rmi"),
    "history": (_I, "history"),
    "pull": (_D, "pull"),
    "push": (_D, "push"),
    "login": (_D, "login"),
    "logout": (_D, "logout"),
    "save": (_F, "save"),
    "load": (_F, "load"),
    "commit": (_F, "commit"),
    "export": (_F, "export"),
    "create": (_R, "create"),
    "run": (_R, "run"),
    "start": (_R, "start"),
    "ps": (_C, "ps"),
    "logs": (_C, "logs"),
    "top": (_C, "top"),
    "wait": (_L, "wait"),
    "stop": (_L, "stop"),
    "kill": (_L, "kill"),
    "rm": (_L, "rm"),
    "restart": (_L, "restart"),
    "rename": (_L, "rename"),
    "attach": (_A, "attach"),
    "exec": (_A, "exec"),
    "pause": (_O, "pause"),
    "unpause": (_O, "unpause"),
    "stats": (_O, "stats"),
    "events": (_O, "events"),
    "diff": (_O, "diff"),
    "update": (_O, "update"),
    "port": (_O, "port"),
    "cp": (_CP, "cp"),
    "build": ("berth.cli.cmd_build", "build"),
    "completion": ("berth.cli.completion", "completion"),
}

MANAGEMENT: dict[str, dict[str, tuple[str, str]]] = {
    "container": {
        "ls": COMMANDS["ps"], "list": COMMANDS["ps"], "ps": COMMANDS["ps"],
        "rm": COMMANDS["rm"], "remove": COMMANDS["rm"],
        "prune": (_L, "container_prune"),
        "inspect": (_S, "container_inspect"),
        "commit": COMMANDS["commit"], "export": COMMANDS["export"],
        **{name: COMMANDS[name] for name in (
            "create", "run", "start", "stop", "kill", "restart", "rename", "wait", "logs",
            "top", "attach", "exec", "pause", "unpause", "stats", "diff", "update", "port", "cp")},
    },
    "image": {
        "ls": COMMANDS["images"], "list": COMMANDS["images"],
        "rm": COMMANDS["rmi"], "remove": COMMANDS["rmi"],
        "inspect": (_S, "image_inspect"),
        **{name: COMMANDS[name] for name in ("tag", "import", "history", "pull", "push", "save", "load",
                                             "build")},
        "prune": (_F, "image_prune"),
    },
    "system": {"info": COMMANDS["info"], "df": (_F, "system_df"), "events": COMMANDS["events"],
               "dial-stdio": ("berth.cli.cmd_remote", "dial_stdio"),
               "rootless-check": ("berth.cli.cmd_remote", "rootless_check")},
    "network": {name: ("berth.cli.cmd_network", f"network_{name}") for name in (
        "create", "ls", "inspect", "rm", "connect", "disconnect", "prune")} | {
        "list": ("berth.cli.cmd_network", "network_ls"), "remove": ("berth.cli.cmd_network", "network_rm")},
    "volume": {name: ("berth.cli.cmd_volume", f"volume_{name}") for name in ("create", "ls", "inspect", "rm", "prune")}
    | {"list": ("berth.cli.cmd_volume", "volume_ls"), "remove": ("berth.cli.cmd_volume", "volume_rm")},
    "builder": {"build": COMMANDS["build"], "prune": ("berth.cli.cmd_build", "builder_prune")},
    "cri": {name: ("berth.cli.cmd_cri", f"cri_{name}") for name in ("pods", "ps", "images", "exec", "logs")},
    "registry": {"serve": ("berth.cli.cmd_registry", "registry_serve"),
                 "gc": ("berth.cli.cmd_registry", "registry_gc")},
}

_GLOBAL_WITH_VALUE = {"-H", "--host", "-l", "--log-level", "--config", "-c", "--context",
                      "--tlscacert", "--tlscert", "--tlskey"}
_GLOBAL_BOOL = {"-D", "--debug", "--tls", "--tlsverify"}

MAIN_HELP = """\
Usage:  berth [OPTIONS] COMMAND

A self-sufficient runtime for containers

Common Commands:
  run         Create and run a new container from an image
  ps          List containers
  images      List images
  version     Show the berth version information
  info        Display system-wide information

Management Commands:
  builder     Manage builds
  container   Manage containers
  image       Manage images
  network     Manage networks
  system      Manage berth
  volume      Manage volumes

Commands:
  attach      Attach local standard input, output, and error streams to a running container
  build       Build an image from a Dockerfile
  cp          Copy files/folders between a container and the local filesystem
  create      Create a new container
  diff        Inspect changes to files or directories on a container's filesystem
  events      Get real time events from the server
  exec        Execute a command in a running container
  commit      Create a new image from a container's changes
  export      Export a container's filesystem as a tar archive
  history     Show the history of an image
  import      Import the contents from a tarball to create a filesystem image
  inspect     Return low-level information on berth objects
  kill        Kill one or more running containers
  load        Load an image from a tar archive or STDIN
  login       Authenticate to a registry
  logout      Log out from a registry
  logs        Fetch the logs of a container
  pause       Pause all processes within one or more containers
  port        List port mappings or a specific mapping for the container
  pull        Download an image from a registry
  push        Upload an image to a registry
  rename      Rename a container
  restart     Restart one or more containers
  rm          Remove one or more containers
  rmi         Remove one or more images
  save        Save one or more images to a tar archive (streamed to STDOUT by default)
  start       Start one or more stopped containers
  stats       Display a live stream of container(s) resource usage statistics
  stop        Stop one or more running containers
  tag         Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
  top         Display the running processes of a container
  unpause     Unpause all processes within one or more containers
  update      Update configuration of one or more containers
  wait        Block until one or more containers stop, then print their exit codes

Global Options:
  -H, --host string   Daemon socket to connect to (default BERTH_HOST, DOCKER_HOST,
                      unix:///run/berth/berth.sock)
      --tls           Use TLS; implied by --tlsverify
      --tlscacert string  Trust certs signed only by this CA (default "$DOCKER_CERT_PATH/ca.pem")
      --tlscert string    Path to TLS certificate file (default "$DOCKER_CERT_PATH/cert.pem")
      --tlskey string     Path to TLS key file (default "$DOCKER_CERT_PATH/key.pem")
      --tlsverify         Use TLS and verify the remote (default DOCKER_TLS_VERIFY)
  -v, --version       Print version information and quit

Run 'berth COMMAND --help' for more information on a command.
"""


class Cli:
    """What every command gets: the chosen daemon address, a lazy client, and output helpers."""

    def __init__(self, host_flag: str | None, tls_flags: TLSFlags | None = None) -> None:
        self.host_flag = host_flag
        self.tls_flags = tls_flags
        self._client = None
        self.command_path = ""

    @property
    def host(self) -> str:
        from berth.client.host import resolve_host

        return resolve_host(self.host_flag)

    @property
    def client(self):  # type: ignore[no-untyped-def]
        if self._client is None:
            from berth.client.api import Client
            from berth.client.host import TLSFlags, resolve_tls

            tcp = self.host.startswith(("tcp://", "http://"))
            tls = resolve_tls(self.tls_flags or TLSFlags()) if tcp else None
            self._client = Client(self.host, tls=tls)
        return self._client

    @staticmethod
    def out(text: str) -> None:
        sys.stdout.write(text)

    @staticmethod
    def err(text: str) -> None:
        sys.stdout.flush()
        sys.stderr.write(text)
        sys.stderr.flush()


def _split_globals(argv: list[str], tls: TLSFlags | None = None) -> tuple[str | None, list[str], bool]:
    """Return (host flag, remaining argv, version flag) from the leading global options; the
    TLS ones go into ``tls``."""
    host = None
    version = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in _GLOBAL_WITH_VALUE:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise SystemExit(_usage_exit(f"flag needs an argument: {name}"))
                value = argv[i]
            if name in ("-H", "--host"):
                host = value
            elif tls is not None and name in ("--tlscacert", "--tlscert", "--tlskey"):
                setattr(tls, name[5:].replace("cacert", "ca"), value)
        elif arg.startswith("-H") and len(arg) > 2:
            host = arg[2:]
        elif name in _GLOBAL_BOOL:
            if tls is not None and name in ("--tls", "--tlsverify"):
                if value not in ("", "true", "false", "1", "0"):
                    raise SystemExit(_usage_exit(f'invalid argument "{value}" for "{name}" flag: '
                                                 'strconv.ParseBool: parsing "' + value + '": invalid syntax'))
                setattr(tls, "tls" if name == "--tls" else "verify", value in ("", "true", "1"))
        elif arg in ("-v", "--version"):
            version = True
        elif arg in ("-h", "--help"):
            return host, [], version
        elif arg.startswith("-"):
            raise SystemExit(_usage_exit(
                f"unknown flag: {arg}" if arg.startswith("--")
                else f"unknown shorthand flag: '{arg[1:2]}' in {arg}"))
        else:
            return host, argv[i:], version
        i += 1
    return host, [], version


def _usage_exit(message: str) -> int:
    sys.stderr.write(f"{message}\n\nUsage:  berth [OPTIONS] COMMAND\n\n"
                     "Run 'berth --help' for more information\n")
    return 125


def _resolve(argv: list[str]) -> tuple[tuple[str, str] | None, str, list[str]]:
    """Find the command entry for argv; returns (entry, command path, rest)."""
    name = argv[0]
    if name in MANAGEMENT:
        if len(argv) < 2 or argv[1].startswith("-"):
            return None, name, argv[1:]
        sub = MANAGEMENT[name].get(argv[1])
        return sub, f"{name} {argv[1]}", argv[2:]
    return COMMANDS.get(name), name, argv[1:]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = _main(args)
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # silence the flush at exit
        except OSError:
            pass
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    return code


def _main(args: list[str]) -> int:
    from berth.client.host import TLSFlags

    tls = TLSFlags()
    host, rest, version_flag = _split_globals(args, tls)
    if version_flag:
        from berth import __version__

        sys.stdout.write(f"Berth version {__version__}\n")
        return 0
    if not rest:
        sys.stdout.write(MAIN_HELP)
        return 0
    entry, path, cmd_args = _resolve(rest)
    if entry is None:
        if rest[0] in MANAGEMENT:
            if len(rest) < 2 or rest[1] in ("-h", "--help"):
                sys.stdout.write(f"\nUsage:  berth {rest[0]} COMMAND\n\n"
                                 f"Manage {rest[0]}s\n\nCommands:\n" + "".join(
                                     f"  {c}\n" for c in MANAGEMENT[rest[0]]) + "\n")
                return 0
            sys.stderr.write(f"berth: unknown command: berth {path}\n\n"
                             f"Run 'berth {rest[0]} --help' for more information\n")
            return 1
        sys.stderr.write(f"berth: unknown command: berth {rest[0]}\n\n"
                         "Run 'berth --help' for more information\n")
        return 1
    module_name, suffix = entry
    import importlib

    module = importlib.import_module(module_name)
    spec = getattr(module, f"spec_{suffix}")()
    canonical = spec.path
    spec.use = path + spec.use[len(canonical):]
    from berth.cli._flags import HelpRequested, UsageError

    try:
        opts, pos = spec.parse(cmd_args)
    except HelpRequested:
        sys.stdout.write(spec.help_text())
        return 0
    except UsageError as exc:
        sys.stderr.write(spec.error_text(exc) + "\n")
        return 125 if exc.flag_error else 1
    cli = Cli(host, tls)
    cli.command_path = path
    try:
        return _dispatch(cli, getattr(module, f"run_{suffix}"), opts, pos)
    except UsageError as exc:  # a flag's value the command itself found bad (e.g. a --filter)
        sys.stderr.write(spec.error_text(exc) + "\n")
        return 125 if exc.flag_error else 1


def _dispatch(cli: Cli, func, opts, pos) -> int:  # type: ignore[no-untyped-def]
    from berth.client._http import TLSSetupError
    from berth.client.api import APIError, ConnectFailed, DaemonUnavailable

    try:
        return int(func(cli, opts, pos) or 0)
    except (DaemonUnavailable, ConnectFailed) as exc:
        cli.err(f"{exc}\n")
        return 1
    except TLSSetupError as exc:   # the docker CLI's words when a TLS file cannot be read
        cli.err(f"Failed to initialize: unable to resolve docker endpoint: {exc}\n")
        return 1
    except APIError as exc:
        cli.err(f"Error response from daemon: {exc.message}\n")
        return 1
    finally:
        if cli._client is not None:
            cli._client.close()


if __name__ == "__main__":
    sys.exit(main())
