"""The certificate and key that sign framecast's C2PA manifests.

A real deployment supplies its own: FRAMECAST_C2PA_CERT (PEM: the signing certificate, then
any intermediates) and FRAMECAST_C2PA_KEY (PEM private key), from a CA on a C2PA trust list.
Without them framecast makes a local chain on first use, under the user's config directory
(FRAMECAST_CONFIG_DIR, else $XDG_CONFIG_HOME/framecast, else ~/.config/framecast): a root CA
and a signing certificate under it (ECDSA P-256, ES256, emailProtection extended key usage,
as C2PA asks of signers). Nothing is downloaded. Manifests signed this way verify as intact
but untrusted, because nobody else trusts that root; a verifier that should trust it is given
FRAMECAST_C2PA_TRUST_ANCHORS=<config dir>/c2pa/root.pem.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT_YEARS = 10
SIGNER_YEARS = 2


@dataclass(frozen=True)
class Credentials:
    chain: bytes  # PEM: the signing certificate first, then the issuers
    key: bytes  # PEM private key
    source: str  # "environment" or the folder of the local chain


def config_dir() -> Path:
    if os.environ.get("FRAMECAST_CONFIG_DIR"):
        return Path(os.environ["FRAMECAST_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "framecast"


def signing_credentials() -> Credentials:
    """The supplied certificate and key, or the local chain (made on first use)."""
    cert, key = os.environ.get("FRAMECAST_C2PA_CERT"), os.environ.get("FRAMECAST_C2PA_KEY")
    if cert or key:
        if not (cert and key):
            raise ValueError("set both FRAMECAST_C2PA_CERT and FRAMECAST_C2PA_KEY, or neither")
        return Credentials(_read(cert), _read(key), "environment")
    folder = config_dir() / "c2pa"
    chain, key_path = folder / "chain.pem", folder / "signer.key"
    if not (chain.is_file() and key_path.is_file()) or _expired(chain.read_bytes()):
        if folder.exists():  # expired or broken: kept aside, never deleted
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            folder.rename(folder.with_name(f"c2pa.old-{stamp}-{os.getpid()}"))
        # made in a private folder and renamed into place: two processes starting at once never
        # mix one's key with the other's certificate; the loser uses the winner's chain
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".c2pa-", dir=folder.parent))
        make_local_chain(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return Credentials(chain.read_bytes(), key_path.read_bytes(), str(folder))


def trust_anchors() -> str | None:
    """PEM root certificates a verifier trusts besides the SDK's own (FRAMECAST_C2PA_TRUST_ANCHORS)."""
    path = os.environ.get("FRAMECAST_C2PA_TRUST_ANCHORS")
    return _read(path).decode() if path else None


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror}") from None


def _expired(chain_pem: bytes) -> bool:
    from cryptography import x509

    cert = x509.load_pem_x509_certificates(chain_pem)[0]
    return cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)


def make_local_chain(folder: Path) -> None:
    """Write root.pem, chain.pem (signer + root) and signer.key (mode 0600) into an existing folder."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "framecast (local, untrusted)"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                             data_encipherment=False, key_agreement=False, key_cert_sign=not sign,
                             crl_sign=not sign, encipher_only=False, decipher_only=False)

    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    root_key, signer_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = name(f"framecast local root CA ({os.uname().nodename})")
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365 * ROOT_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage(sign=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    signer = (x509.CertificateBuilder().subject_name(name("framecast local signer")).issuer_name(root_name)
              .public_key(signer_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365 * SIGNER_YEARS))
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(usage(sign=True), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
              .sign(root_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "root.pem").write_bytes(root.public_bytes(pem))
    (folder / "chain.pem").write_bytes(signer.public_bytes(pem) + root.public_bytes(pem))
    key_bytes = signer_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # the root's key is not kept: the local chain never signs a second signer, it is made anew
    fd = os.open(folder / "signer.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
