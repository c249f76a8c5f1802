import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from otawire.v1 import ota_pb2 as _ota_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ThresholdAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    THRESHOLD_ACTION_UNSPECIFIED: _ClassVar[ThresholdAction]
    THRESHOLD_ACTION_ABORT: _ClassVar[ThresholdAction]
    THRESHOLD_ACTION_PAUSE: _ClassVar[ThresholdAction]

class WaveState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WAVE_STATE_UNSPECIFIED: _ClassVar[WaveState]
    WAVE_STATE_WAITING: _ClassVar[WaveState]
    WAVE_STATE_OPEN: _ClassVar[WaveState]
    WAVE_STATE_DONE: _ClassVar[WaveState]

class CampaignEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_EVENT_KIND_UNSPECIFIED: _ClassVar[CampaignEventKind]
    CAMPAIGN_EVENT_KIND_CREATED: _ClassVar[CampaignEventKind]
    CAMPAIGN_EVENT_KIND_WAVE_OPENED: _ClassVar[CampaignEventKind]
    CAMPAIGN_EVENT_KIND_PAUSED: _ClassVar[CampaignEventKind]
    CAMPAIGN_EVENT_KIND_RESUMED: _ClassVar[CampaignEventKind]
    CAMPAIGN_EVENT_KIND_ABORTED: _ClassVar[CampaignEventKind]
    CAMPAIGN_EVENT_KIND_COMPLETED: _ClassVar[CampaignEventKind]
    CAMPAIGN_EVENT_KIND_ROLLED_BACK: _ClassVar[CampaignEventKind]

class CampaignState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAMPAIGN_STATE_UNSPECIFIED: _ClassVar[CampaignState]
    CAMPAIGN_STATE_RUNNING: _ClassVar[CampaignState]
    CAMPAIGN_STATE_PAUSED: _ClassVar[CampaignState]
    CAMPAIGN_STATE_ABORTED: _ClassVar[CampaignState]
    CAMPAIGN_STATE_COMPLETED: _ClassVar[CampaignState]
THRESHOLD_ACTION_UNSPECIFIED: ThresholdAction
THRESHOLD_ACTION_ABORT: ThresholdAction
THRESHOLD_ACTION_PAUSE: ThresholdAction
WAVE_STATE_UNSPECIFIED: WaveState
WAVE_STATE_WAITING: WaveState
WAVE_STATE_OPEN: WaveState
WAVE_STATE_DONE: WaveState
CAMPAIGN_EVENT_KIND_UNSPECIFIED: CampaignEventKind
CAMPAIGN_EVENT_KIND_CREATED: CampaignEventKind
CAMPAIGN_EVENT_KIND_WAVE_OPENED: CampaignEventKind
CAMPAIGN_EVENT_KIND_PAUSED: CampaignEventKind
CAMPAIGN_EVENT_KIND_RESUMED: CampaignEventKind
CAMPAIGN_EVENT_KIND_ABORTED: CampaignEventKind
CAMPAIGN_EVENT_KIND_COMPLETED: CampaignEventKind
CAMPAIGN_EVENT_KIND_ROLLED_BACK: CampaignEventKind
CAMPAIGN_STATE_UNSPECIFIED: CampaignState
CAMPAIGN_STATE_RUNNING: CampaignState
CAMPAIGN_STATE_PAUSED: CampaignState
CAMPAIGN_STATE_ABORTED: CampaignState
CAMPAIGN_STATE_COMPLETED: CampaignState

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
    action: ThresholdAction
    def __init__(self, trip_failures: _Optional[int] = ..., trip_failure_share: _Optional[float] = ..., action: _Optional[_Union[ThresholdAction, str]] = ...) -> None: ...

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

class GetCampaignRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PauseCampaignRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ResumeCampaignRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortCampaignRequest(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackCampaignRequest(_message.Message):
    __slots__ = ("name", "to_version", "waves", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    to_version: str
    waves: _containers.RepeatedCompositeFieldContainer[WaveSpec]
    reason: str
    def __init__(self, name: _Optional[str] = ..., to_version: _Optional[str] = ..., waves: _Optional[_Iterable[_Union[WaveSpec, _Mapping]]] = ..., reason: _Optional[str] = ...) -> None: ...

class ListCampaignsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCampaignsResponse(_message.Message):
    __slots__ = ("campaigns", "next_page_token")
    CAMPAIGNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    campaigns: _containers.RepeatedCompositeFieldContainer[Campaign]
    next_page_token: str
    def __init__(self, campaigns: _Optional[_Iterable[_Union[Campaign, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WaveStatus(_message.Message):
    __slots__ = ("index", "percent", "size", "state", "pending", "in_flight", "installed", "confirmed", "failed", "timed_out", "soaked_s", "success_share", "min_soak_s", "open_time")
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
    SOAKED_S_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_SHARE_FIELD_NUMBER: _ClassVar[int]
    MIN_SOAK_S_FIELD_NUMBER: _ClassVar[int]
    OPEN_TIME_FIELD_NUMBER: _ClassVar[int]
    index: int
    percent: float
    size: int
    state: WaveState
    pending: int
    in_flight: int
    installed: int
    confirmed: int
    failed: int
    timed_out: int
    soaked_s: float
    success_share: float
    min_soak_s: float
    open_time: _timestamp_pb2.Timestamp
    def __init__(self, index: _Optional[int] = ..., percent: _Optional[float] = ..., size: _Optional[int] = ..., state: _Optional[_Union[WaveState, str]] = ..., pending: _Optional[int] = ..., in_flight: _Optional[int] = ..., installed: _Optional[int] = ..., confirmed: _Optional[int] = ..., failed: _Optional[int] = ..., timed_out: _Optional[int] = ..., soaked_s: _Optional[float] = ..., success_share: _Optional[float] = ..., min_soak_s: _Optional[float] = ..., open_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FailureGroup(_message.Message):
    __slots__ = ("status", "reason", "count", "vehicle_ids")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_IDS_FIELD_NUMBER: _ClassVar[int]
    status: _ota_pb2.InstallStatus
    reason: str
    count: int
    vehicle_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, status: _Optional[_Union[_ota_pb2.InstallStatus, str]] = ..., reason: _Optional[str] = ..., count: _Optional[int] = ..., vehicle_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CampaignEvent(_message.Message):
    __slots__ = ("kind", "wave", "detail", "actor", "event_time")
    KIND_FIELD_NUMBER: _ClassVar[int]
    WAVE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIME_FIELD_NUMBER: _ClassVar[int]
    kind: CampaignEventKind
    wave: int
    detail: str
    actor: str
    event_time: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[_Union[CampaignEventKind, str]] = ..., wave: _Optional[int] = ..., detail: _Optional[str] = ..., actor: _Optional[str] = ..., event_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Campaign(_message.Message):
    __slots__ = ("campaign_id", "spec", "state", "state_reason", "current_wave", "vehicles", "waves", "failures", "events", "name", "create_time")
    CAMPAIGN_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    CURRENT_WAVE_FIELD_NUMBER: _ClassVar[int]
    VEHICLES_FIELD_NUMBER: _ClassVar[int]
    WAVES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    campaign_id: str
    spec: CampaignSpec
    state: CampaignState
    state_reason: str
    current_wave: int
    vehicles: int
    waves: _containers.RepeatedCompositeFieldContainer[WaveStatus]
    failures: _containers.RepeatedCompositeFieldContainer[FailureGroup]
    events: _containers.RepeatedCompositeFieldContainer[CampaignEvent]
    name: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, campaign_id: _Optional[str] = ..., spec: _Optional[_Union[CampaignSpec, _Mapping]] = ..., state: _Optional[_Union[CampaignState, str]] = ..., state_reason: _Optional[str] = ..., current_wave: _Optional[int] = ..., vehicles: _Optional[int] = ..., waves: _Optional[_Iterable[_Union[WaveStatus, _Mapping]]] = ..., failures: _Optional[_Iterable[_Union[FailureGroup, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[CampaignEvent, _Mapping]]] = ..., name: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
