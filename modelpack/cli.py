"""``ota zoo`` and ``ota classify``: the model package's commands."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from modelpack import zoo as zoo_models
from modelpack.runtime import NotAnOnnxModel

console = Console()


def write_atomically(path: Path, data: bytes) -> None:
    """Write via a temp file + fsync + rename so a crash never leaves half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.group()
def zoo() -> None:
    """Build the zoo's ONNX models (deterministic: same bytes every build)."""


@zoo.command("list")
def zoo_list() -> None:
    """List the models the zoo can build."""
    table = Table("name", "trained", "description")
    for m in zoo_models.MODELS.values():
        table.add_row(m.name, m.trained, m.description)
    console.print(table)


@zoo.command("build")
@click.argument("name", type=click.Choice(zoo_models.names()))
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the ONNX file.")
def zoo_build(name: str, output: Path) -> None:
    """Build zoo model NAME into an ONNX file."""
    data = zoo_models.build(name)
    write_atomically(output, data)
    click.echo(f"{output}: {name}, {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--top", "-k", default=5, show_default=True, type=click.IntRange(1, 1000), help="How many classes to show.")
def classify(model: Path, image: Path, top: int) -> None:
    """Classify IMAGE with the ONNX classifier MODEL (preprocessing from its metadata)."""
    from modelpack.classify import Classifier

    try:
        clf = Classifier(model)
        preds = clf.classify(image, top)
    except (FileNotFoundError, NotAnOnnxModel, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    note = "" if clf.info.trained else "  [untrained: seeded weights]"
    table = Table("class id", "label", "probability", title=f"{image.name} with {clf.info.architecture or model.name}{note}")
    for p in preds:
        table.add_row(str(p.class_id), p.label, f"{p.prob:.4f}")
    console.print(table)
