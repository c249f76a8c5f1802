import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Encoding(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENCODING_UNSPECIFIED: _ClassVar[Encoding]
    ENCODING_FULL: _ClassVar[Encoding]
    ENCODING_BYTEDELTA: _ClassVar[Encoding]
    ENCODING_TENSORDELTA: _ClassVar[Encoding]
    ENCODING_DEEPCOMPRESSION: _ClassVar[Encoding]

class InstallStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTALL_STATUS_UNSPECIFIED: _ClassVar[InstallStatus]
    INSTALL_STATUS_DOWNLOADING: _ClassVar[InstallStatus]
    INSTALL_STATUS_INSTALLED: _ClassVar[InstallStatus]
    INSTALL_STATUS_CONFIRMED: _ClassVar[InstallStatus]
    INSTALL_STATUS_FAILED: _ClassVar[InstallStatus]
    INSTALL_STATUS_ROLLED_BACK: _ClassVar[InstallStatus]
    INSTALL_STATUS_ATTACK_DETECTED: _ClassVar[InstallStatus]
    INSTALL_STATUS_TIMED_OUT: _ClassVar[InstallStatus]

class ReleaseKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RELEASE_KIND_UNSPECIFIED: _ClassVar[ReleaseKind]
    RELEASE_KIND_RELEASE: _ClassVar[ReleaseKind]
    RELEASE_KIND_DOWNGRADE: _ClassVar[ReleaseKind]
    RELEASE_KIND_RERELEASE: _ClassVar[ReleaseKind]

class FileKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_KIND_UNSPECIFIED: _ClassVar[FileKind]
    FILE_KIND_METADATA: _ClassVar[FileKind]
    FILE_KIND_TARGET: _ClassVar[FileKind]
    FILE_KIND_ENCODING: _ClassVar[FileKind]
ENCODING_UNSPECIFIED: Encoding
ENCODING_FULL: Encoding
ENCODING_BYTEDELTA: Encoding
ENCODING_TENSORDELTA: Encoding
ENCODING_DEEPCOMPRESSION: Encoding
INSTALL_STATUS_UNSPECIFIED: InstallStatus
INSTALL_STATUS_DOWNLOADING: InstallStatus
INSTALL_STATUS_INSTALLED: InstallStatus
INSTALL_STATUS_CONFIRMED: InstallStatus
INSTALL_STATUS_FAILED: InstallStatus
INSTALL_STATUS_ROLLED_BACK: InstallStatus
INSTALL_STATUS_ATTACK_DETECTED: InstallStatus
INSTALL_STATUS_TIMED_OUT: InstallStatus
RELEASE_KIND_UNSPECIFIED: ReleaseKind
RELEASE_KIND_RELEASE: ReleaseKind
RELEASE_KIND_DOWNGRADE: ReleaseKind
RELEASE_KIND_RERELEASE: ReleaseKind
FILE_KIND_UNSPECIFIED: FileKind
FILE_KIND_METADATA: FileKind
FILE_KIND_TARGET: FileKind
FILE_KIND_ENCODING: FileKind

class UploadHeader(_message.Message):
    __slots__ = ("name", "version", "length", "sha256", "hardware_ids", "metadata_json", "signed_targets", "allow_downgrade", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    SIGNED_TARGETS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_DOWNGRADE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    length: int
    sha256: str
    hardware_ids: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: str
    signed_targets: bytes
    allow_downgrade: bool
    reason: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., length: _Optional[int] = ..., sha256: _Optional[str] = ..., hardware_ids: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[str] = ..., signed_targets: _Optional[bytes] = ..., allow_downgrade: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class UploadModelRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class UploadModelResponse(_message.Message):
    __slots__ = ("name", "version", "sha256", "length", "target_path", "bytes_received", "resource_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    length: int
    target_path: str
    bytes_received: int
    resource_name: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., length: _Optional[int] = ..., target_path: _Optional[str] = ..., bytes_received: _Optional[int] = ..., resource_name: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ("name", "page_size", "page_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    page_size: int
    page_token: str
    def __init__(self, name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ModelVersion(_message.Message):
    __slots__ = ("name", "version", "sha256", "length", "target_path", "hardware_ids", "metadata_json", "resource_name", "publish_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_IDS_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    PUBLISH_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    length: int
    target_path: str
    hardware_ids: _containers.RepeatedScalarFieldContainer[str]
    metadata_json: str
    resource_name: str
    publish_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., length: _Optional[int] = ..., target_path: _Optional[str] = ..., hardware_ids: _Optional[_Iterable[str]] = ..., metadata_json: _Optional[str] = ..., resource_name: _Optional[str] = ..., publish_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("versions", "next_page_token")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    next_page_token: str
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetMetadataRequest(_message.Message):
    __slots__ = ("role",)
    ROLE_FIELD_NUMBER: _ClassVar[int]
    role: str
    def __init__(self, role: _Optional[str] = ...) -> None: ...

class SignedMetadata(_message.Message):
    __slots__ = ("role", "data")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    role: str
    data: bytes
    def __init__(self, role: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PutMetadataRequest(_message.Message):
    __slots__ = ("metadata",)
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: SignedMetadata
    def __init__(self, metadata: _Optional[_Union[SignedMetadata, _Mapping]] = ...) -> None: ...

class PutMetadataResponse(_message.Message):
    __slots__ = ("role", "version")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    role: str
    version: int
    def __init__(self, role: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class AssignModelRequest(_message.Message):
    __slots__ = ("vehicle_id", "name", "version")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    name: str
    version: str
    def __init__(self, vehicle_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class AssignModelResponse(_message.Message):
    __slots__ = ("vehicle_id", "name", "version")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    name: str
    version: str
    def __init__(self, vehicle_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ReleaseModelRequest(_message.Message):
    __slots__ = ("name", "version", "scope", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    scope: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., scope: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ReleaseModelResponse(_message.Message):
    __slots__ = ("name", "version", "scope")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    scope: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., scope: _Optional[str] = ...) -> None: ...

class ListReleasesRequest(_message.Message):
    __slots__ = ("name", "page_size", "page_token")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    page_size: int
    page_token: str
    def __init__(self, name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ReleaseEntry(_message.Message):
    __slots__ = ("name", "version", "kind", "scope", "actor", "reason", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    kind: ReleaseKind
    scope: str
    actor: str
    reason: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., kind: _Optional[_Union[ReleaseKind, str]] = ..., scope: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListReleasesResponse(_message.Message):
    __slots__ = ("releases", "next_page_token")
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    releases: _containers.RepeatedCompositeFieldContainer[ReleaseEntry]
    next_page_token: str
    def __init__(self, releases: _Optional[_Iterable[_Union[ReleaseEntry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class InstalledModel(_message.Message):
    __slots__ = ("name", "version", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    sha256: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class CheckForUpdateRequest(_message.Message):
    __slots__ = ("vehicle_id", "hardware_id", "installed", "wanted_models", "tags", "accepted_encodings")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_ID_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_FIELD_NUMBER: _ClassVar[int]
    WANTED_MODELS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    hardware_id: str
    installed: _containers.RepeatedCompositeFieldContainer[InstalledModel]
    wanted_models: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    accepted_encodings: _containers.RepeatedScalarFieldContainer[Encoding]
    def __init__(self, vehicle_id: _Optional[str] = ..., hardware_id: _Optional[str] = ..., installed: _Optional[_Iterable[_Union[InstalledModel, _Mapping]]] = ..., wanted_models: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., accepted_encodings: _Optional[_Iterable[_Union[Encoding, str]]] = ...) -> None: ...

class UpdateOffer(_message.Message):
    __slots__ = ("name", "version", "target_path", "length", "sha256", "encoding", "download_path", "download_length", "base_sha256", "fallback_encoding", "fallback_download_path", "fallback_download_length")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_PATH_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_PATH_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_LENGTH_FIELD_NUMBER: _ClassVar[int]
    BASE_SHA256_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_ENCODING_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_DOWNLOAD_PATH_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_DOWNLOAD_LENGTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    target_path: str
    length: int
    sha256: str
    encoding: Encoding
    download_path: str
    download_length: int
    base_sha256: str
    fallback_encoding: Encoding
    fallback_download_path: str
    fallback_download_length: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., target_path: _Optional[str] = ..., length: _Optional[int] = ..., sha256: _Optional[str] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., download_path: _Optional[str] = ..., download_length: _Optional[int] = ..., base_sha256: _Optional[str] = ..., fallback_encoding: _Optional[_Union[Encoding, str]] = ..., fallback_download_path: _Optional[str] = ..., fallback_download_length: _Optional[int] = ...) -> None: ...

class CheckForUpdateResponse(_message.Message):
    __slots__ = ("offers", "poll_interval_s")
    OFFERS_FIELD_NUMBER: _ClassVar[int]
    POLL_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    offers: _containers.RepeatedCompositeFieldContainer[UpdateOffer]
    poll_interval_s: int
    def __init__(self, offers: _Optional[_Iterable[_Union[UpdateOffer, _Mapping]]] = ..., poll_interval_s: _Optional[int] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("kind", "path", "offset", "max_bytes", "vehicle_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    kind: FileKind
    path: str
    offset: int
    max_bytes: int
    vehicle_id: str
    def __init__(self, kind: _Optional[_Union[FileKind, str]] = ..., path: _Optional[str] = ..., offset: _Optional[int] = ..., max_bytes: _Optional[int] = ..., vehicle_id: _Optional[str] = ...) -> None: ...

class DownloadChunk(_message.Message):
    __slots__ = ("offset", "data", "total_length")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    total_length: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., total_length: _Optional[int] = ...) -> None: ...

class ReportInstallRequest(_message.Message):
    __slots__ = ("vehicle_id", "hardware_id", "name", "version", "sha256", "status", "reason", "from_version", "encoding", "bytes_downloaded", "duration_s", "active_version")
    VEHICLE_ID_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    BYTES_DOWNLOADED_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    vehicle_id: str
    hardware_id: str
    name: str
    version: str
    sha256: str
    status: InstallStatus
    reason: str
    from_version: str
    encoding: Encoding
    bytes_downloaded: int
    duration_s: float
    active_version: str
    def __init__(self, vehicle_id: _Optional[str] = ..., hardware_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., status: _Optional[_Union[InstallStatus, str]] = ..., reason: _Optional[str] = ..., from_version: _Optional[str] = ..., encoding: _Optional[_Union[Encoding, str]] = ..., bytes_downloaded: _Optional[int] = ..., duration_s: _Optional[float] = ..., active_version: _Optional[str] = ...) -> None: ...

class ReportInstallResponse(_message.Message):
    __slots__ = ("accepted",)
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    def __init__(self, accepted: _Optional[bool] = ...) -> None: ...

class SignedManifest(_message.Message):
    __slots__ = ("signed", "signature", "certificate_pem")
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    signed: bytes
    signature: bytes
    certificate_pem: bytes
    def __init__(self, signed: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., certificate_pem: _Optional[bytes] = ...) -> None: ...

class SubmitManifestRequest(_message.Message):
    __slots__ = ("manifest",)
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    manifest: SignedManifest
    def __init__(self, manifest: _Optional[_Union[SignedManifest, _Mapping]] = ...) -> None: ...

class SubmitManifestResponse(_message.Message):
    __slots__ = ("accepted", "counter")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    counter: int
    def __init__(self, accepted: _Optional[bool] = ..., counter: _Optional[int] = ...) -> None: ...
