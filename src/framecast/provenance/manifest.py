"""C2PA content credentials: sign an mp4 with a manifest, read one back and judge it.

The manifest says what made the video: a `c2pa.actions.v2` assertion whose `c2pa.created`
action has digitalSourceType trainedAlgorithmicMedia and framecast as its software agent,
and a framecast assertion with the model, the watermark id and the generation settings
(the prompt only when the user asks for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from .credentials import signing_credentials, trust_anchors

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
GENERATOR = "framecast"
FRAMECAST_ASSERTION = "org.framecast.generation"
UNTRUSTED = "signingCredential.untrusted"
# verification never goes to the network: no remote manifests, no OCSP
_OFFLINE = {"remote_manifest_fetch": False, "ocsp_fetch": False}


@dataclass
class Generation:
    """What the manifest records about one generated video."""

    model: str
    watermark_id: str | None = None
    settings: dict = field(default_factory=dict)  # seed, steps, size, ...: reproducible, not personal
    prompt: str | None = None  # recorded only when the user opts in


def manifest_definition(gen: Generation, title: str) -> dict:
    created = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
               "softwareAgent": {"name": GENERATOR, "version": __version__},
               "parameters": {"model": gen.model}}
    record = {"generator": GENERATOR, "version": __version__, "model": gen.model,
              "watermark_id": gen.watermark_id, "settings": gen.settings}
    if gen.prompt is not None:
        record["prompt"] = gen.prompt
    return {"claim_generator_info": [{"name": GENERATOR, "version": __version__}],
            "title": title, "format": "video/mp4",
            "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [created]}},
                           {"label": FRAMECAST_ASSERTION, "data": record}]}


def sign_mp4(src: str | Path, dst: str | Path, gen: Generation, mime: str = "video/mp4") -> str:
    """Write dst: src (an mp4, or another format c2pa embeds into, e.g. image/png) with a signed
    C2PA manifest embedded. Returns where the credentials came from."""
    import c2pa

    creds = signing_credentials()
    context = c2pa.Context.from_dict({"verify": _OFFLINE, "builder": {"thumbnail": {"enabled": False}}})
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, creds.chain, creds.key, None))
    except c2pa.C2paError as e:
        raise ValueError(f"the C2PA signing certificate or key ({creds.source}) is not usable: {e}") from None
    with signer, c2pa.Builder(manifest_definition(gen, Path(dst).name), context=context) as builder, \
            open(src, "rb") as source, open(dst, "w+b") as dest:
        builder.sign(signer, mime, source, dest)
    return creds.source


def read_manifest(path: str | Path) -> dict:
    """The file's C2PA status: {"status": "absent" | "valid" | "trusted" | "invalid", "reason", ...}.

    valid: the manifest is intact and its signature checks out, but the signer is on no trust
    list this verifier has (framecast's local chain is on none unless FRAMECAST_C2PA_TRUST_ANCHORS
    says so); trusted: the same, and the signer chains to a trusted root."""
    import c2pa

    settings = {"verify": _OFFLINE}
    anchors = trust_anchors()
    if anchors:
        settings["trust"] = {"user_anchors": anchors}
    try:
        with c2pa.Reader(str(path), context=c2pa.Context.from_dict(settings)) as reader:
            state = (reader.get_validation_state() or "").lower()
            results = reader.get_validation_results() or {}
            active = reader.get_active_manifest() or {}
    except c2pa.C2paError as e:
        if "ManifestNotFound" in type(e).__name__ or "no JUMBF" in str(e):
            return {"status": "absent", "reason": "the file carries no C2PA manifest"}
        return {"status": "invalid", "reason": f"the C2PA manifest cannot be read: {e}"}
    failures = [f"{f.get('code')}: {f.get('explanation', '')}".rstrip(": ")
                for f in results.get("activeManifest", {}).get("failure", [])]
    report = {"status": {"trusted": "trusted", "valid": "valid"}.get(state, "invalid"), **_summary(active)}
    if report["status"] == "valid":
        report["reason"] = "intact and correctly signed, but the signer is not on a trust list here"
    elif report["status"] == "invalid":
        report["reason"] = "; ".join(f for f in failures if not f.startswith(UNTRUSTED)) or f"validation state {state!r}"
    else:
        report["reason"] = "intact, correctly signed by a trusted signer"
    return report


def _summary(active: dict) -> dict:
    generator = [g.get("name") for g in active.get("claim_generator_info", []) if isinstance(g, dict)]
    actions, framecast = [], None
    for a in active.get("assertions", []):
        if a.get("label", "").startswith("c2pa.actions"):
            actions += [{k: v for k, v in act.items() if k in ("action", "digitalSourceType")}
                        for act in a.get("data", {}).get("actions", [])]
        elif a.get("label") == FRAMECAST_ASSERTION:
            framecast = a.get("data")
    sig = active.get("signature_info", {})
    return {"claim_generator": ", ".join(g for g in generator if g) or None, "actions": actions,
            "signer": sig.get("common_name") or sig.get("issuer"), "framecast": framecast}

