"""The ``ota`` command line: one entry point, subcommands per role.

Each package owns its commands (``modelpack/cli.py``, ``server/cli.py``,
``vehicle_agent/cli.py``, ``simulator/cli.py``, ``ota/demo.py``); this module
only wires them together, importing each lazily so that ``ota --help`` stays
fast and a broken optional part cannot break the others.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from ota import __version__

# command name -> "module:attribute" of a click command or group
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "ota.demo:demo",
        "Run the whole path end to end on loopback: publish, update, classify.",
    ),
    "keys": ("server.signing.cli:keys", "Create and manage the TUF signing keys."),
    "certs": (
        "server.cli:certs",
        "Make the fleet PKI for mutual TLS (CA, registry, vehicles, publishers).",
    ),
    "director": (
        "server.cli:director",
        "Per-vehicle instructions: assign a model version to a vehicle.",
    ),
    "rerelease": (
        "server.release_cli:rerelease",
        "Sign an older version again as the newest release (before a rollback).",
    ),
    "registry": ("server.release_cli:registry", "Run the cloud registry (gRPC)."),
    "publish": (
        "server.cli:publish",
        "Validate, upload and sign a model version (offered to no vehicle yet).",
    ),
    "release": (
        "server.release_cli:release",
        "Send a published version to the fleet, a tag or a vehicle.",
    ),
    "releases": (
        "server.release_cli:releases",
        "The release log: who released what to whom, and why.",
    ),
    "models": ("server.cli:models", "List published models and versions."),
    "campaign": (
        "server.campaigns.cli:campaign",
        "Roll a version out in waves: canaries, thresholds, rollback.",
    ),
    "vehicles": (
        "server.fleet_cli:vehicles",
        "The fleet inventory: what each vehicle runs, its last report.",
    ),
    "audit": (
        "server.fleet_cli:audit",
        "The registry's audit log: who changed what, when, with which arguments.",
    ),
    "agent": ("vehicle_agent.cli:agent", "Run the in-car vehicle agent."),
    "zoo": ("modelpack.cli:zoo", "Build the zoo's ONNX models (SqueezeNet, ...)."),
    "classify": ("modelpack.cli:classify", "Classify an image with an ONNX model."),
    "detect": (
        "modelpack.cli:detect",
        "Detect objects in an image with an ONNX detector (SqueezeDet).",
    ),
    "fidelity": (
        "modelpack.cli:fidelity",
        "Measure how much a candidate model changes a reference's answers.",
    ),
    "pack": (
        "modelpack.codecs.cli:pack",
        "Encode models and deltas (diff, apply, encode, decode).",
    ),
    "simulate": (
        "simulator.cli:simulate",
        "Simulate a fleet rollout over limited links; compare strategies.",
    ),
}


def show_envvars(cmd: click.Command) -> click.Command:
    """Make ``--help`` name the environment variable of every option that does not say it already.

    Options read ``OTA_<COMMAND>_<OPTION>`` (click's auto prefix) unless they name their own variable.
    """
    for p in cmd.params:
        if isinstance(p, click.Option) and not p.is_eager and "Env:" not in (p.help or ""):
            p.show_envvar = True
    for sub in getattr(cmd, "commands", {}).values():
        show_envvars(sub)
    return cmd


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[name][0].split(":")
        return show_envvars(getattr(importlib.import_module(module_name), attr))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "OTA"},
)
@click.version_option(__version__, prog_name="ota")
@click.option(
    "-v", "--verbose", count=True, help="More log output (-v info, -vv debug). Env: OTA_VERBOSE."
)
def cli(verbose: int) -> None:
    """squeeze-ota: signed, delta-compressed over-the-air updates of
    SqueezeNet / SqueezeDet models to vehicles, over gRPC.

    \b
    Quick start (README.md, "Using it by hand", has every step):
      ota demo                            the whole path on loopback, in one go
      ota keys init --keys keys           TUF signing keys (then: keys online)
      ota certs init --pki pki            the fleet CA and the registry's certificate
      ota registry serve --data reg ...   run a registry (blocks)
      ota publish M.onnx --name N --version 1.0.0 --keys keys
      ota release N 1.0.0 --fleet NAME    offer it to vehicles
      ota agent run --state car --once    update a vehicle once

    Every option can also be set by an environment variable named
    OTA_<COMMAND>_<OPTION>, e.g. OTA_REGISTRY_SERVE_LISTEN.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# Modules of the optional extras (pyproject.toml): the base install is the vehicle agent's.
EXTRA_OF_MODULE = {
    "onnx": "registry",
    "grpc_health": "registry",
    "prometheus_client": "registry",
    "grpc_reflection": "registry",
    "matplotlib": "sim",
    "psycopg": "pg",
    "psycopg_pool": "pg",
}


def quiet_grpc_core(argv: list[str]) -> None:
    """Keep gRPC core's own log lines (``E1202 … ssl_transport_security.cc …``) out of the terminal.

    The one-line errors of ``ota`` say what went wrong; core's lines only repeat it
    in C++ terms. Asked for with ``-vv`` (or by setting GRPC_VERBOSITY yourself).
    Set before the first gRPC call, which is when core reads it.
    """
    if "GRPC_VERBOSITY" in os.environ:
        return
    head = argv[: next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))]
    verbose = sum(
        a.count("v") if a.startswith("-") and not a.startswith("--") else a == "--verbose"
        for a in head
    )
    os.environ["GRPC_VERBOSITY"] = "ERROR" if verbose >= 2 else "NONE"


def main() -> None:
    quiet_grpc_core(sys.argv[1:])
    try:
        cli(prog_name="ota")
    except KeyboardInterrupt:
        sys.exit(130)
    except ModuleNotFoundError as e:
        extra = EXTRA_OF_MODULE.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        click.echo(
            f"Error: this command needs the {extra!r} extra (no module {e.name!r}); "
            f"install it with: pip install 'squeeze-ota[{extra}]'",
            err=True,
        )
        sys.exit(1)
    except Exception as e:
        message = user_error(e)
        if message is None:
            raise
        click.echo(f"Error: {message}", err=True)  # click's own style, as for every other error
        sys.exit(1)


def user_error(e: Exception) -> str | None:
    """The one line for errors that come from the user's files or link, not from a bug."""
    from otawire.tls import TlsError

    if isinstance(e, TlsError):
        return str(e)
    if isinstance(e, PermissionError | IsADirectoryError | FileNotFoundError) and e.filename:
        return f"{e.filename}: {e.strerror}"
    import grpc

    if isinstance(e, grpc.RpcError):
        from otawire.rpcerrors import describe

        return str(describe(e, "(registry)"))
    return None


if __name__ == "__main__":
    main()
