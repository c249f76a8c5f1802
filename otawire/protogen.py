"""Generate the Python gRPC stubs in ``otawire/v1`` from ``protos/otawire/v1/*.proto``.

The proto package stays ``ota.v1`` (the names on the wire); the files live under
``otawire/v1`` so that the generated modules import as ``otawire.v1``.

The stubs are committed so that an install needs no code generator;
``tests/test_protos.py`` regenerates them into a temporary directory and fails
when the committed copies are stale. Run ``make protos`` after editing a proto.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted((root / "otawire" / "v1").glob("*.proto"))


def generate(out_dir: Path, root: Path = PROTO_ROOT) -> list[Path]:
    """Run grpcio-tools' protoc into ``out_dir``; return the generated files."""
    import grpc_tools
    from grpc_tools import protoc  # only needed by developers, not at run time

    include = Path(grpc_tools.__file__).parent / "_proto"
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{root}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *[str(p.relative_to(root)) for p in proto_files(root)],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return sorted((out_dir / "otawire" / "v1").glob("*.py*"))


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        dest = REPO / "otawire" / "v1"
        dest.mkdir(exist_ok=True)
        for f in generated:
            shutil.copyfile(f, dest / f.name)
            log.info("wrote %s", dest / f.name)
        (dest / "__init__.py").write_text(
            '"""Generated gRPC stubs for protos/otawire/v1 (see otawire/protogen.py)."""\n'
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
