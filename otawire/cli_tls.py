"""The TLS options every networked ``ota`` command shares (click decorators)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from otawire.tls import TlsFiles

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


_META = "ota.tls"


def _stash(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta.setdefault(_META, {})[param.name] = value
    return value


def tls_options(
    who: str, expose: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--ca/--cert/--key`` (mutual TLS, the default) and ``--insecure`` (plain text, explicit).

    With ``expose=False`` the values are not passed to the command but kept for
    :func:`client_tls_from_context` (commands that share one client helper).
    """
    kw: dict[str, Any] = {} if expose else {"expose_value": False, "callback": _stash}

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option(
            "--insecure",
            is_flag=True,
            help="Plain-text gRPC, no authentication: local experiments only. Never the default.",
            **kw,
        )(f)
        f = click.option(
            "--key",
            "tls_key",
            type=_FILE,
            envvar="OTA_TLS_KEY",
            help=f"The {who}'s private key (PEM). Env: OTA_TLS_KEY.",
            **kw,
        )(f)
        f = click.option(
            "--cert",
            "tls_cert",
            type=_FILE,
            envvar="OTA_TLS_CERT",
            help=f"The {who}'s certificate, issued by the fleet CA (`ota certs`). Env: OTA_TLS_CERT.",
            **kw,
        )(f)
        f = click.option(
            "--ca",
            "tls_ca",
            type=_FILE,
            envvar="OTA_TLS_CA",
            help="The fleet CA certificate (ca.pem). Env: OTA_TLS_CA.",
            **kw,
        )(f)
        return f

    return decorate


def client_tls_from_context() -> dict[str, Any]:
    """``tls_files``/``insecure`` keyword arguments for a client, from options stashed by ``tls_options``."""
    v = click.get_current_context().meta.get(_META, {})
    insecure = bool(v.get("insecure"))
    return {
        "tls_files": tls_files(v.get("tls_ca"), v.get("tls_cert"), v.get("tls_key"), insecure),
        "insecure": insecure,
    }


def tls_files(
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
    required: bool = True,
) -> TlsFiles | None:
    """The TLS files given, or None with ``--insecure``; a clear error when some are missing."""
    given = [p for p in (tls_ca, tls_cert, tls_key) if p is not None]
    if len(given) == 3:
        return TlsFiles(tls_ca, tls_cert, tls_key)  # type: ignore[arg-type]
    if insecure:
        return None  # plain text; a lone --ca may still serve to verify manifests
    if given:
        raise click.UsageError("--ca, --cert and --key go together: give all three")
    if not required:
        return None
    raise click.UsageError(
        "TLS is required: give --ca, --cert and --key (see `ota certs`), or --insecure for plain text"
    )
