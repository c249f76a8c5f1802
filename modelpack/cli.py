"""``ota zoo`` and ``ota classify``: the model package's commands."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import click
from rich.table import Table

from modelpack import zoo as zoo_models
from modelpack.cache import write_atomically
from modelpack.runtime import NotAnOnnxModel
from otawire.cli_out import table_console


@click.group()
def zoo() -> None:
    """Build the zoo's ONNX models (deterministic: same bytes every build)."""


@zoo.command("list")
def zoo_list() -> None:
    """List the models the zoo can build."""
    table = Table("name", "trained", "description")
    for m in zoo_models.MODELS.values():
        table.add_row(m.name, m.trained, m.description)
    table_console().print(table)


@zoo.command("build")
@click.argument("name", type=click.Choice(zoo_models.names()))
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write the ONNX file.",
)
def zoo_build(name: str, output: Path) -> None:
    """Build zoo model NAME into an ONNX file."""
    data = zoo_models.build(name)
    write_atomically(output, data)
    click.echo(f"{output}: {name}, {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")


@zoo.command("lineage")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the lineage's ONNX files and lineage.json.",
)
@click.option("--force", is_flag=True, help="Rebuild even if the cache holds this lineage.")
@click.option(
    "--finetune",
    is_flag=True,
    help="Also a full fine-tune of every layer with PyTorch (needs the bench extra: pip install -e '.[bench]').",
)
def zoo_lineage(out: Path, force: bool, finetune: bool) -> None:
    """Derive successor versions of the real SqueezeNet v1.0 (head retrain, int8, 6-bit
    codebooks, optionally a full fine-tune), each with its measured fidelity against the parent."""
    from modelpack.lineage import LineageRecipe, build_lineage, read_manifest

    try:
        paths = build_lineage(
            out, force=force, recipe=LineageRecipe(finetune=True) if finetune else None
        )
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc
    manifest = read_manifest(out)
    table = Table(
        "member",
        "file",
        "bytes",
        "suggested version",
        "top-1 agr.",
        "top-5 agr.",
        "confident top-1",
        title="SqueezeNet v1.0 lineage (fidelity against the base, real weights)",
    )
    for key in paths:
        if key == "manifest":
            continue
        entry = manifest["members"][key]
        f = entry["fidelity_vs_parent"] or {}
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
        table.add_row(
            key,
            entry["file"],
            f"{entry['size']:,}",
            entry["suggested_version"],
            pct(f.get("top1_agreement")),
            pct(f.get("top5_agreement")),
            pct(f.get("confident_top1_agreement")),
        )
    table_console().print(table)
    click.echo(f"written to {paths['manifest'].parent}")


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("image", type=click.Path(path_type=Path))
@click.option(
    "--top",
    "-k",
    default=5,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many classes to show.",
)
def classify(model: Path, image: Path, top: int) -> None:
    """Classify IMAGE with the ONNX classifier MODEL (preprocessing from its metadata)."""
    from modelpack.classify import Classifier

    try:
        clf = Classifier(model)
        preds = clf.classify(image, top)
    except (FileNotFoundError, NotAnOnnxModel, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not clf.info.trained:
        click.echo("note: this model is untrained (seeded weights); its answers are meaningless")
    table = Table(
        "class id",
        "label",
        "probability",
        title=f"{image.name} with {clf.info.architecture or model.name}",
    )
    for p in preds:
        table.add_row(str(p.class_id), p.label, f"{p.prob:.4f}")
    table_console().print(table)


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("image", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the image with the boxes drawn on it here (PNG).",
)
@click.option(
    "--threshold",
    type=float,
    default=None,
    help="Draw and list boxes scoring above this (default: the model's plot threshold, 0.4 for SqueezeDet).",
)
def detect(model: Path, image: Path, out: Path | None, threshold: float | None) -> None:
    """Detect objects in IMAGE with the ONNX detector MODEL (anchors, NMS from its metadata)."""
    from modelpack.detect import Detector, draw
    from modelpack.imaging import load_image

    try:
        detector = Detector(model)
        picture = load_image(image)
        dets = detector.detect(picture)
    except (FileNotFoundError, NotAnOnnxModel, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    thresh = detector.config.plot_thresh if threshold is None else threshold
    shown = [d for d in dets if d.score > thresh]
    if not detector.info.trained:
        click.echo(
            "note: this detector is untrained (seeded detection layers); its boxes are not meaningful"
        )
    table = Table(
        "class",
        "score",
        "xmin",
        "ymin",
        "xmax",
        "ymax",
        title=f"{image.name} with {detector.info.architecture}",
    )
    for d in shown:
        table.add_row(d.label, f"{d.score:.3f}", *(f"{v:.0f}" for v in d.box))
    table_console().print(table)
    click.echo(
        f"{len(dets)} detections after top-{detector.config.top_n} and NMS; {len(shown)} above {thresh:g}"
    )
    if out is not None:
        buf = io.BytesIO()
        draw(picture, dets, thresh).save(buf, format="PNG")
        write_atomically(out, buf.getvalue())
        click.echo(f"boxes drawn into {out}")


@click.command()
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option(
    "--n",
    "n",
    type=click.IntRange(1, 5000),
    default=None,
    help="Evaluation inputs (default 300 for classifiers, 24 for detectors).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the evaluation set.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def fidelity(reference: Path, candidate: Path, n: int | None, seed: int, as_json: bool) -> None:
    """How much CANDIDATE changes REFERENCE's answers on a fixed set of real-photo views."""
    from modelpack.fidelity import compare

    try:
        report = compare(reference, candidate, n=n, seed=seed)
    except (FileNotFoundError, NotAnOnnxModel, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(report.to_json())
        return
    table = Table(
        "measure", "value", title=f"fidelity of {candidate.name} against {reference.name}"
    )
    table.add_row("inputs", f"{report.n_inputs} ({report.kind}, seed {report.seed})")
    if report.top1_agreement is not None:
        table.add_row("top-1 agreement", f"{100 * report.top1_agreement:.1f}%")
        table.add_row("top-5 agreement", f"{100 * (report.top5_agreement or 0):.1f}%")
        if report.confident_top1_agreement is not None:
            table.add_row(
                "top-1 agreement, confident views",
                f"{100 * report.confident_top1_agreement:.1f}% of {report.n_confident}",
            )
    if report.box_agreement is not None:
        table.add_row(
            "box agreement (IoU >= 0.5)",
            f"{100 * report.box_agreement:.1f}% of {report.n_reference_boxes}",
        )
        table.add_row("mean box IoU", f"{report.mean_box_iou:.3f}")
    table.add_row("max |diff| of outputs", f"{report.max_abs_diff:.3g}")
    table.add_row("mean |diff| of outputs", f"{report.mean_abs_diff:.3g}")
    table_console().print(table)
