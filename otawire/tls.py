"""The fleet PKI and TLS credentials for gRPC with mutual authentication.

Shared by the registry and the agent (both may import ``ota``, neither imports
the other). Made with the ``cryptography`` package; nothing here is new crypto:
ECDSA P-256 keys, X.509 certificates issued by one fleet CA.

Every certificate names its holder's **role** in a subject-alternative-name URI
``urn:ota:<role>:<name>`` (role ``server``, ``vehicle`` or ``publisher``). The
registry authorises by that URI, read from the certificate the TLS handshake
verified; a vehicle's URI is also its vehicle id.

The vehicle's TLS key doubles as the key that signs its version manifest, so
the director knows which vehicle signed a manifest from its certificate alone.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelpack.fsio import atomic_write_bytes

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ROLES = ("server", "vehicle", "publisher")
URI_PREFIX = "urn:ota:"
CA_CERT, CA_KEY = "ca.pem", "ca.key"


class TlsError(Exception):
    """A certificate or key is missing, malformed, or does not verify."""


@dataclass(frozen=True)
class Identity:
    """Who is on the other end, as the fleet CA certified it."""

    role: str
    name: str


@dataclass(frozen=True)
class TlsFiles:
    """The three files one party needs: the fleet CA and its own certificate and key."""

    ca: Path
    cert: Path
    key: Path
    # The name to check the server's certificate against when it differs from the
    # address dialled (e.g. through a relay); empty: the address itself.
    server_name: str = ""

    @classmethod
    def in_dir(cls, pki: Path, role: str, name: str) -> TlsFiles:
        """Where ``ota certs`` writes the files of one party under ``pki``."""
        base = Path(pki) / (role if role == "server" else f"{role}s/{name}")
        return cls(Path(pki) / CA_CERT, base.with_suffix(".pem"), base.with_suffix(".key"))

    def read(self) -> tuple[bytes, bytes, bytes]:
        """The three files' bytes, checked: PEM, the key is the certificate's, the CA issued it."""
        try:
            ca, cert, key = self.ca.read_bytes(), self.cert.read_bytes(), self.key.read_bytes()
        except FileNotFoundError as e:
            raise TlsError(f"TLS file missing: {e.filename} (make it with `ota certs`)") from None
        except OSError as e:
            raise TlsError(f"cannot read TLS file {e.filename}: {e.strerror}") from None
        check_pair(self, ca, cert, key)
        return ca, cert, key


def check_pair(files: TlsFiles, ca: bytes, cert: bytes, key: bytes) -> None:
    """Refuse, with the file and the fix, what gRPC would only report as a failed handshake."""
    ca_cert = _load_pem("--ca", files.ca, ca, x509.load_pem_x509_certificate)
    own = _load_pem("--cert", files.cert, cert, x509.load_pem_x509_certificate)
    private = _load_pem(
        "--key", files.key, key, lambda d: serialization.load_pem_private_key(d, None)
    )
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != own.public_key().public_bytes(*spki):
        raise TlsError(
            f"--key {files.key} is not the key of --cert {files.cert}; give the .key written next to that .pem"
        )
    try:
        own.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise TlsError(
            f"--cert {files.cert} is not issued by --ca {files.ca} (another fleet's CA?); "
            "give the ca.pem of the PKI that issued it"
        ) from None


def _load_pem(label: str, path: Path, data: bytes, load: Callable[[bytes], _T]) -> _T:
    what = label[2:]
    if b"-----BEGIN" not in data:
        raise TlsError(
            f"{label} {path} is not a PEM file; give the {what} file `ota certs` wrote (*.pem / *.key)"
        )
    try:
        return load(data)
    except (ValueError, TypeError) as e:
        raise TlsError(
            f"{label} {path} is not a valid PEM {what} ({e}); give the file `ota certs` wrote"
        ) from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_ca(pki: Path, name: str = "squeeze-ota fleet CA", days: int = 3650) -> Path:
    """Create the fleet CA (key + self-signed certificate) in ``pki``."""
    pki = Path(pki)
    if (pki / CA_KEY).exists():
        raise TlsError(f"a CA already exists in {pki}; refusing to overwrite it")
    pki.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    atomic_write_bytes(pki / CA_KEY, _key_pem(key), mode=0o600)
    atomic_write_bytes(pki / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
    return pki / CA_CERT


def issue(
    pki: Path,
    role: str,
    name: str,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: int = 825,
) -> TlsFiles:
    """Issue a certificate for ``role``/``name`` signed by the CA in ``pki``."""
    if role not in ROLES:
        raise TlsError(f"unknown certificate role {role!r}; use one of {', '.join(ROLES)}")
    if not name or "/" in name or name.startswith("."):
        raise TlsError(f"bad certificate name {name!r}")
    pki = Path(pki)
    try:
        ca_key = serialization.load_pem_private_key((pki / CA_KEY).read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate((pki / CA_CERT).read_bytes())
    except FileNotFoundError:
        raise TlsError(f"no CA in {pki}; run `ota certs init --pki {pki}` first") from None
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{URI_PREFIX}{role}:{name}")]
    usage = ExtendedKeyUsageOID.CLIENT_AUTH
    if role == "server":
        usage = ExtendedKeyUsageOID.SERVER_AUTH
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    files = TlsFiles.in_dir(pki, role, name)
    files.cert.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(files.key, _key_pem(key), mode=0o600)
    atomic_write_bytes(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


def ensure(pki: Path, role: str, name: str) -> TlsFiles:
    """The files of ``role``/``name`` under ``pki``, issued on first use (demos, tests, emulation)."""
    files = TlsFiles.in_dir(pki, role, name)
    return files if files.cert.exists() and files.key.exists() else issue(pki, role, name)


def identity_of(cert_pem: bytes) -> Identity:
    """The role and name a certificate carries in its ``urn:ota:`` SAN."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound) as e:
        raise TlsError(f"certificate has no ota identity: {e}") from None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(URI_PREFIX):
            role, _, name = uri[len(URI_PREFIX) :].partition(":")
            if role in ROLES and name:
                return Identity(role, name)
    raise TlsError("certificate has no urn:ota:<role>:<name> subject alternative name")


def verify_issued_by(cert_pem: bytes, ca_pem: bytes) -> Identity:
    """Check ``cert_pem`` was issued by the CA and is in date; return its identity."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as e:
        raise TlsError(f"certificate is not issued by the fleet CA: {e}") from None
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise TlsError(
            f"certificate is not valid now (valid {cert.not_valid_before_utc} to {cert.not_valid_after_utc})"
        )
    return identity_of(cert_pem)


def sign(key_pem: bytes, data: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError("signing key is not an EC key")
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify_signature(cert_pem: bytes, data: bytes, signature: bytes) -> None:
    pub = x509.load_pem_x509_certificate(cert_pem).public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise TlsError("certificate key is not an EC key")
    try:
        pub.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise TlsError("signature does not verify with the certificate's key") from None


# -- gRPC credentials ---------------------------------------------------------------------------
def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """TLS that *requires* a client certificate from the fleet CA (mutual auth)."""
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=True
    )


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


def secure_or_insecure_channel(
    address: str, tls: TlsFiles | None, insecure: bool, options: Sequence[tuple[str, object]] = ()
) -> grpc.Channel:
    """A TLS channel, or plain text only when ``insecure`` was asked for explicitly."""
    if tls is not None:
        opts = list(options)
        if tls.server_name:
            opts.append(("grpc.ssl_target_name_override", tls.server_name))
        return grpc.secure_channel(address, channel_credentials(tls), options=opts)
    if not insecure:
        raise TlsError(
            f"no TLS credentials for {address}: pass --ca/--cert/--key, or --insecure for plain text"
        )
    log.warning(
        "plain-text gRPC to %s (--insecure): no confidentiality, no server authentication", address
    )
    return grpc.insecure_channel(address, options=list(options))


def peer_identity(context: grpc.ServicerContext) -> Identity | None:
    """The verified client identity of a gRPC call, or None on a plain-text server."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    return identity_of(pems[0])


def peer_cert_pem(context: grpc.ServicerContext) -> bytes | None:
    pems = context.auth_context().get("x509_pem_cert")
    return pems[0] if pems else None
