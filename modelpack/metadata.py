"""What a package says about its model, so an agent can run any published model
without code changes.

``ModelInfo`` travels as JSON in the registry's ``metadata_json`` and inside the
signed TUF target's ``custom`` field (so the agent trusts it only as far as the
signature reaches). It is also embedded in the ONNX file's ``metadata_props``
under the key ``squeeze_ota.model_info`` by the zoo builders.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ONNX_METADATA_KEY = "squeeze_ota.model_info"

ModelKind = Literal["classifier", "detector"]


@dataclass(frozen=True)
class Preprocessing:
    """How to turn an image into the model's input tensor."""

    height: int = 227
    width: int = 227
    channel_order: Literal["BGR", "RGB"] = "BGR"
    mean: tuple[float, float, float] = (104.0, 117.0, 123.0)  # in channel_order
    scale: float = 1.0  # multiply after subtracting the mean; pixels are 0..255
    layout: Literal["NCHW"] = "NCHW"


@dataclass(frozen=True)
class SelfTest:
    """A golden input and the expected output, checked before a model goes live.

    The input is regenerated from ``seed`` (uniform 0..255 pixels through the
    preprocessing above) so the metadata stays small; ``expected`` holds the
    first values of the flattened first output, compared within ``atol``.
    """

    seed: int = 0
    expected: tuple[float, ...] = ()
    expected_top1: int | None = None
    atol: float = 1e-3


@dataclass(frozen=True)
class ModelInfo:
    """Facts about one model version that the agent needs to run it."""

    kind: ModelKind = "classifier"
    architecture: str = ""  # e.g. "squeezenet1.0"
    input_name: str = "data"
    input_shape: tuple[int, ...] = (1, 3, 227, 227)
    output_names: tuple[str, ...] = ("prob",)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: str = "imagenet"  # a label set the agent knows, or "" for none
    trained: bool = True  # False for seeded weights: say so in every report
    provenance: str = ""  # how the weights were made
    selftest: SelfTest | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        d = dict(d)
        pre = Preprocessing(**{**d.pop("preprocessing", {})})
        pre = Preprocessing(
            height=pre.height,
            width=pre.width,
            channel_order=pre.channel_order,
            mean=tuple(pre.mean),  # type: ignore[arg-type]
            scale=pre.scale,
            layout=pre.layout,
        )
        st = d.pop("selftest", None)
        selftest = None
        if st is not None:
            selftest = SelfTest(
                seed=int(st.get("seed", 0)),
                expected=tuple(float(x) for x in st.get("expected", ())),
                expected_top1=st.get("expected_top1"),
                atol=float(st.get("atol", 1e-3)),
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelInfo fields: {sorted(unknown)}")
        for key in ("input_shape", "output_names"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(preprocessing=pre, selftest=selftest, **d)

    @classmethod
    def from_json(cls, text: str) -> ModelInfo:
        return cls.from_dict(json.loads(text))
