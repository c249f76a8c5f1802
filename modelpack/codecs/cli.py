"""``ota pack``: make and apply the encodings by hand.

ota pack diff OLD.onnx NEW.onnx -o PATCH     smallest delta (or full) from OLD
ota pack apply OLD.onnx PATCH -o NEW.onnx    rebuild NEW, refusing a wrong base
ota pack encode MODEL.onnx -o FILE           smallest stand-alone encoding
ota pack decode FILE -o MODEL.onnx
"""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from modelpack import codecs
from modelpack.fsio import atomic_write_bytes
from otawire.cli_out import table_console

err_console = Console(stderr=True)

_CODEC_CHOICE = click.Choice(["auto", *codecs.CODECS])


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _choose(new: bytes, base: bytes | None, codec: str, delta_only: bool) -> codecs.Encoding:
    if codec != "auto":
        blob = codecs.encode(codec, new, base)
        return codecs.Encoding(codec, "base" if codecs.CODECS[codec].needs_base else None, blob)
    only = ("bytedelta", "tensordelta") if delta_only else None
    choices = codecs.best_encoding(new, {"base": base} if base is not None else None, only=only)
    table = Table(title="candidates", show_edge=False)
    table.add_column("codec")
    table.add_column("bytes", justify="right")
    table.add_column("of the model", justify="right")
    for c in choices:
        table.add_row(c.codec, f"{c.size:,}", f"{c.size / len(new):.2%}")
    table_console().print(table)
    return choices[0]


def _report(verb: str, enc_size: int, model_size: int, codec: str, seconds: float) -> None:
    table_console().print(
        f"{verb} [bold]{codec}[/]: {enc_size:,} B for a {model_size:,} B model "
        f"({enc_size / model_size:.2%}, {model_size / max(enc_size, 1):.1f}x smaller) in {seconds * 1000:.0f} ms"
    )


def _fail(exc: Exception) -> None:
    err_console.print(f"[red]error:[/] {exc}")
    raise SystemExit(2)


@click.group()
def pack() -> None:
    """Encode models and deltas that rebuild the exact signed bytes."""


@pack.command()
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--codec",
    type=_CODEC_CHOICE,
    default="auto",
    show_default=True,
    help="auto: the smallest delta.",
)
def diff(old: Path, new: Path, output: Path, codec: str) -> None:
    """Make a patch that rebuilds NEW from OLD."""
    old_b, new_b = _read(old), _read(new)
    t0 = time.perf_counter()
    choice = _choose(new_b, old_b, codec, delta_only=True)
    atomic_write_bytes(output, choice.blob)
    _report("diff", choice.size, len(new_b), choice.codec, time.perf_counter() - t0)


@pack.command()
@click.argument("old", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("patch", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
def apply(old: Path, patch: Path, output: Path) -> None:
    """Rebuild the new model from OLD and PATCH (checks base, integrity, result)."""
    blob = _read(patch)
    t0 = time.perf_counter()
    try:
        header = codecs.read_header(blob)
        new_b = codecs.decode(blob, _read(old))
    except codecs.CodecError as exc:
        _fail(exc)
    atomic_write_bytes(output, new_b)
    _report(
        "apply", len(blob), len(new_b), codecs.codec_name(header.codec_id), time.perf_counter() - t0
    )
    table_console().print(f"sha256 {header.target_sha256.hex()} verified")


@pack.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--codec",
    type=click.Choice(["auto", "full", "deepcompression"]),
    default="auto",
    show_default=True,
)
def encode(model: Path, output: Path, codec: str) -> None:
    """Encode MODEL on its own (no base), smallest codec by default."""
    data = _read(model)
    t0 = time.perf_counter()
    choice = _choose(data, None, codec, delta_only=False)
    atomic_write_bytes(output, choice.blob)
    _report("encode", choice.size, len(data), choice.codec, time.perf_counter() - t0)


@pack.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--base",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="for a delta encoding",
)
def decode(file: Path, output: Path, base: Path | None) -> None:
    """Rebuild a model from an encoding."""
    blob = _read(file)
    t0 = time.perf_counter()
    try:
        header = codecs.read_header(blob)
        data = codecs.decode(blob, _read(base) if base else None)
    except codecs.CodecError as exc:
        _fail(exc)
    atomic_write_bytes(output, data)
    _report(
        "decode", len(blob), len(data), codecs.codec_name(header.codec_id), time.perf_counter() - t0
    )
