from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_KIND_UNSPECIFIED: _ClassVar[ModelKind]
    MODEL_KIND_CLASSIFIER: _ClassVar[ModelKind]
    MODEL_KIND_DETECTOR: _ClassVar[ModelKind]

class UpdateState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_STATE_UNSPECIFIED: _ClassVar[UpdateState]
    UPDATE_STATE_IDLE: _ClassVar[UpdateState]
    UPDATE_STATE_DOWNLOADING: _ClassVar[UpdateState]
    UPDATE_STATE_VERIFYING: _ClassVar[UpdateState]
    UPDATE_STATE_STAGED: _ClassVar[UpdateState]
    UPDATE_STATE_ACTIVATING: _ClassVar[UpdateState]
    UPDATE_STATE_ACTIVE: _ClassVar[UpdateState]
    UPDATE_STATE_CONFIRMED: _ClassVar[UpdateState]
    UPDATE_STATE_FAILED: _ClassVar[UpdateState]
    UPDATE_STATE_ROLLED_BACK: _ClassVar[UpdateState]
MODEL_KIND_UNSPECIFIED: ModelKind
MODEL_KIND_CLASSIFIER: ModelKind
MODEL_KIND_DETECTOR: ModelKind
UPDATE_STATE_UNSPECIFIED: UpdateState
UPDATE_STATE_IDLE: UpdateState
UPDATE_STATE_DOWNLOADING: UpdateState
UPDATE_STATE_VERIFYING: UpdateState
UPDATE_STATE_STAGED: UpdateState
UPDATE_STATE_ACTIVATING: UpdateState
UPDATE_STATE_ACTIVE: UpdateState
UPDATE_STATE_CONFIRMED: UpdateState
UPDATE_STATE_FAILED: UpdateState
UPDATE_STATE_ROLLED_BACK: UpdateState

class Tensor(_message.Message):
    __slots__ = ("shape", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("image", "tensor")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    tensor: Tensor
    def __init__(self, image: _Optional[bytes] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Served(_message.Message):
    __slots__ = ("model", "version", "sha256")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    sha256: str
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "frame", "top_k")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    model: str
    frame: Frame
    top_k: int
    def __init__(self, model: _Optional[str] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ..., top_k: _Optional[int] = ...) -> None: ...

class ClassScore(_message.Message):
    __slots__ = ("class_id", "label", "prob")
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROB_FIELD_NUMBER: _ClassVar[int]
    class_id: int
    label: str
    prob: float
    def __init__(self, class_id: _Optional[int] = ..., label: _Optional[str] = ..., prob: _Optional[float] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("served", "classes", "inference_ms")
    SERVED_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    served: Served
    classes: _containers.RepeatedCompositeFieldContainer[ClassScore]
    inference_ms: float
    def __init__(self, served: _Optional[_Union[Served, _Mapping]] = ..., classes: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ..., inference_ms: _Optional[float] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("model", "frame", "min_score")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    model: str
    frame: Frame
    min_score: float
    def __init__(self, model: _Optional[str] = ..., frame: _Optional[_Union[Frame, _Mapping]] = ..., min_score: _Optional[float] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("class_id", "label", "score", "xmin", "ymin", "xmax", "ymax")
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    XMIN_FIELD_NUMBER: _ClassVar[int]
    YMIN_FIELD_NUMBER: _ClassVar[int]
    XMAX_FIELD_NUMBER: _ClassVar[int]
    YMAX_FIELD_NUMBER: _ClassVar[int]
    class_id: int
    label: str
    score: float
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    def __init__(self, class_id: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ..., xmin: _Optional[float] = ..., ymin: _Optional[float] = ..., xmax: _Optional[float] = ..., ymax: _Optional[float] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("served", "boxes", "inference_ms")
    SERVED_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_MS_FIELD_NUMBER: _ClassVar[int]
    served: Served
    boxes: _containers.RepeatedCompositeFieldContainer[Box]
    inference_ms: float
    def __init__(self, served: _Optional[_Union[Served, _Mapping]] = ..., boxes: _Optional[_Iterable[_Union[Box, _Mapping]]] = ..., inference_ms: _Optional[float] = ...) -> None: ...

class ListServedRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ServedModel(_message.Message):
    __slots__ = ("served", "kind", "update_state", "requests", "errors", "p50_ms", "p99_ms")
    SERVED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    UPDATE_STATE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    served: Served
    kind: ModelKind
    update_state: UpdateState
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    def __init__(self, served: _Optional[_Union[Served, _Mapping]] = ..., kind: _Optional[_Union[ModelKind, str]] = ..., update_state: _Optional[_Union[UpdateState, str]] = ..., requests: _Optional[int] = ..., errors: _Optional[int] = ..., p50_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ...) -> None: ...

class ListServedResponse(_message.Message):
    __slots__ = ("models", "next_page_token")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ServedModel]
    next_page_token: str
    def __init__(self, models: _Optional[_Iterable[_Union[ServedModel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
