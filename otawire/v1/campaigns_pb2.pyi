from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TargetSelection(_message.Message):
    __slots__ = ("hardware_ids", "tags", "vehicle_ids")
    HARDWARE_IDS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_IDS_FIELD_NUMBER: _ClassVar[int]
    hardware_ids: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    vehicle_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hardware_ids: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., vehicle_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class WaveSpec(_message.Message):
    __slots__ = ("percent", "success_share", "min_soak_s")
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_SHARE_FIELD_NUMBER: _ClassVar[int]
    MIN_SOAK_S_FIELD_NUMBER: _ClassVar[int]
    percent: float
    success_share: float
    min_soak_s: float
    def __init__(self, percent: _Optional[float] = ..., success_share: _Optional[float] = ..., min_soak_s: _Optional[float] = ...) -> None: ...

class ErrorThreshold(_message.Message):
    __slots__ = ("trip_failures", "trip_failure_share", "action")
    TRIP_FAILURES_FIELD_NUMBER: _ClassVar[int]
    TRIP_FAILURE_SHARE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    trip_failures: int
    trip_failure_share: float
    action: str
    def __init__(self, trip_failures: _Optional[int] = ..., trip_failure_share: _Optional[float] = ..., action: _Optional[str] = ...) -> None: ...

class CampaignSpec(_message.Message):
    __slots__ = ("name", "model", "version", "target", "waves", "threshold", "max_concurrent_downloads", "timeout_s", "require_confirmed", "rollback_of")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_DOWNLOADS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_OF_FIELD_NUMBER: _ClassVar[int]
    name: str
    model: str
    version: str
    target: TargetSelection
    waves: _containers.RepeatedCompositeFieldContainer[WaveSpec]
    threshold: ErrorThreshold
    max_concurrent_downloads: int
    timeout_s: float
    require_confirmed: bool
    rollback_of: str
    def __init__(self, name: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., target: _Optional[_Union[TargetSelection, _Mapping]] = ..., waves: _Optional[_Iterable[_Union[WaveSpec, _Mapping]]] = ..., threshold: _Optional[_Union[ErrorThreshold, _Mapping]] = ..., max_concurrent_downloads: _Optional[int] = ..., timeout_s: _Optional[float] = ..., require_confirmed: _Optional[bool] = ..., rollback_of: _Optional[str] = ...) -> None: ...

class CreateCampaignRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: CampaignSpec
    def __init__(self, spec: _Optional[_Union[CampaignSpec, _Mapping]] = ...) -> None: ...

class CampaignRef(_message.Message):
    __slots__ = ("campaign_id", "reason")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    reason: str
    def __init__(self, campaign_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("campaign_id", "to_version", "waves", "reason")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    to_version: str
    waves: _containers.RepeatedCompositeFieldContainer[WaveSpec]
    reason: str
    def __init__(self, campaign_id: _Optional[str] = ..., to_version: _Optional[str] = ..., waves: _Optional[_Iterable[_Union[WaveSpec, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCampaignsResponse(_message.Message):
    __slots__ = ("campaigns",)
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[CampaignStatus]
    def __init__(self, campaigns: _Optional[_Iterable[_Union[CampaignStatus, _Mapping]]] = ...) -> None: ...

class WaveStatus(_message.Message):
    __slots__ = ("index", "percent", "size", "state", "pending", "in_flight", "installed", "confirmed", "failed", "timed_out", "opened_at", "soaked_s", "success_share", "min_soak_s")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    SOAKED_S_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_SHARE_FIELD_NUMBER: _ClassVar[int]
    MIN_SOAK_S_FIELD_NUMBER: _ClassVar[int]
    index: int
    percent: float
    size: int
    state: str
    pending: int
    in_flight: int
    installed: int
    confirmed: int
    failed: int
    timed_out: int
    opened_at: float
    soaked_s: float
    success_share: float
    min_soak_s: float
    def __init__(self, index: _Optional[int] = ..., percent: _Optional[float] = ..., size: _Optional[int] = ..., state: _Optional[str] = ..., pending: _Optional[int] = ..., in_flight: _Optional[int] = ..., installed: _Optional[int] = ..., confirmed: _Optional[int] = ..., failed: _Optional[int] = ..., timed_out: _Optional[int] = ..., opened_at: _Optional[float] = ..., soaked_s: _Optional[float] = ..., success_share: _Optional[float] = ..., min_soak_s: _Optional[float] = ...) -> None: ...

class FailureGroup(_message.Message):
    __slots__ = ("status", "reason", "count", "vehicle_ids")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_IDS_FIELD_NUMBER: _ClassVar[int]
    status: str
    reason: str
    count: int
    vehicle_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, status: _Optional[str] = ..., reason: _Optional[str] = ..., count: _Optional[int] = ..., vehicle_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CampaignEvent(_message.Message):
    __slots__ = ("at", "kind", "wave", "detail", "actor")
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WAVE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    at: float
    kind: str
    wave: int
    detail: str
    actor: str
    def __init__(self, at: _Optional[float] = ..., kind: _Optional[str] = ..., wave: _Optional[int] = ..., detail: _Optional[str] = ..., actor: _Optional[str] = ...) -> None: ...

class CampaignStatus(_message.Message):
    __slots__ = ("campaign_id", "spec", "state", "state_reason", "current_wave", "created_at", "vehicles", "waves", "failures", "events")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    CURRENT_WAVE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VEHICLES_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    spec: CampaignSpec
    state: str
    state_reason: str
    current_wave: int
    created_at: float
    vehicles: int
    waves: _containers.RepeatedCompositeFieldContainer[WaveStatus]
    failures: _containers.RepeatedCompositeFieldContainer[FailureGroup]
    events: _containers.RepeatedCompositeFieldContainer[CampaignEvent]
    def __init__(self, campaign_id: _Optional[str] = ..., spec: _Optional[_Union[CampaignSpec, _Mapping]] = ..., state: _Optional[str] = ..., state_reason: _Optional[str] = ..., current_wave: _Optional[int] = ..., created_at: _Optional[float] = ..., vehicles: _Optional[int] = ..., waves: _Optional[_Iterable[_Union[WaveStatus, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[FailureGroup, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[CampaignEvent, _Mapping]]] = ...) -> None: ...
