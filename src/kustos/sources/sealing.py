"""Sealed Secrets: a Secret manifest ⇄ a ``SealedSecret`` whose values are a SOPS file.

A ``SealedSecret`` (``kustos.io/v1alpha1``) is a SOPS document that ``sops`` opens and
edits as it is::

    apiVersion: kustos.io/v1alpha1
    kind: SealedSecret
    metadata:
        name: db
        namespace: prod
        annotations:
            kustos.io/sealed-for: ENC[AES256_GCM,…]    # "prod/db", encrypted
    spec:
        template: {type: Opaque, metadata: {labels: …, annotations: …}}
        data: {password: ENC[AES256_GCM,…]}           # the Secret's base64 text
        stringData: {user: ENC[AES256_GCM,…]}
    sops: {age: […], encrypted_regex: '^(data|stringData|kustos\\.io/sealed-for)$',
           lastmodified: …, mac: …, mac_only_encrypted: true, version: 3.13.2}

**Binding.** Each value is AES-GCM-authenticated with its path, so values cannot be
swapped between keys or files. The namespace and name are bound by the
``kustos.io/sealed-for`` annotation: it is *encrypted* (the file's ``encrypted_regex``
names it), so nobody without the data key can change it, and :func:`unseal` refuses a
SealedSecret whose ``metadata.namespace``/``metadata.name`` differ from it (a moved or
renamed copy). ``sops -d`` shows it in clear, ``sops edit`` keeps it.

**MAC scope.** Files are written with ``mac_only_encrypted: true``: the MAC covers the
encrypted values only (the binding, ``data``, ``stringData``), in document order, which is
sorted key order here. The same object read back from the API server (new metadata
fields, a ``status``, keys sorted by the server) therefore still verifies, which a MAC
over every value could not; and adding, removing or reordering an encrypted value still
breaks it. The template (type, labels, annotations) stays readable and is *not*
authenticated: changing it cannot reveal a value, and moving or renaming is caught by
the binding.

**Empty values.** sops leaves ``""`` in clear and skips ``null``, so neither is
authenticated: :func:`seal` refuses them, and :func:`unseal` refuses a SealedSecret that
holds one (it was added or emptied by hand).

:func:`unseal` also accepts a plain Secret manifest encrypted by
``sops -e --age … --encrypted-regex '^(data|stringData)$'``; its namespace and name are
covered by sops's MAC when the file uses the default MAC mode, and not bound otherwise.

Pure: dicts in, dicts out; randomness and the clock come from the caller.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from kustos.conventions import ANNOTATION_SEALED_FOR, API_VERSION
from kustos.crypto import sops
from kustos.errors import InputError, first_problem
from kustos.kube.objects import DNS1123_SUBDOMAIN

KIND: Final = "SealedSecret"
#: The rule written into every SealedSecret: values and the binding are encrypted.
SEALED_REGEX: Final = r"^(data|stringData|kustos\.io/sealed-for)$"
#: Annotations never copied into a SealedSecret: kubectl's holds the values in clear.
_DROPPED_ANNOTATIONS: Final = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})
_SECRET_KEY: Final = re.compile(r"[-._a-zA-Z0-9]{1,253}")
_BINDING_PATH: Final = ("metadata", "annotations", ANNOTATION_SEALED_FOR)
_RULE: Final = sops.Rule("encrypted_regex", SEALED_REGEX)

M = TypeVar("M", bound=BaseModel)


class SealingError(InputError):
    """A Secret cannot be sealed, or a sealed document cannot be unsealed."""


class BindingError(SealingError):
    """A SealedSecret is found under another namespace or name than it was sealed for."""


# --------------------------------------------------------------------------- shapes


class _Meta(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: StrictStr = Field(min_length=1)
    namespace: StrictStr | None = None
    labels: dict[StrictStr, StrictStr] | None = None
    annotations: dict[StrictStr, StrictStr] | None = None


class _Secret(BaseModel):
    """The parts of a Secret manifest that sealing keeps (status, uid, ... are dropped)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    api_version: Literal["v1"] = Field(alias="apiVersion")
    kind: Literal["Secret"]
    metadata: _Meta
    type: StrictStr | None = None
    immutable: StrictBool | None = None
    data: dict[StrictStr, StrictStr | None] | None = None
    string_data: dict[StrictStr, StrictStr | None] | None = Field(None, alias="stringData")


class _TemplateMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    labels: dict[StrictStr, StrictStr] | None = None
    annotations: dict[StrictStr, StrictStr] | None = None


class _Template(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metadata: _TemplateMeta | None = None
    type: StrictStr | None = None
    immutable: StrictBool | None = None


class _SealedSpec(BaseModel):
    """``spec`` of a SealedSecret once decrypted (the CRD's schema, field for field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: _Template | None = None
    data: dict[StrictStr, StrictStr | None] | None = None
    string_data: dict[StrictStr, StrictStr | None] | None = Field(None, alias="stringData")


def _validated(model: type[M], value: Any, *, source: str, what: str) -> M:
    """*value* as *model*, or one error naming the first bad field (never its value)."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        where, why = first_problem(exc)
        raise SealingError(f"{source}: not a valid {what} ({where or 'document'}: {why})") from None


# --------------------------------------------------------------------------- seal


def seal(
    manifest: Mapping[str, Any],
    recipients: Sequence[sops.Recipient],
    *,
    now: datetime,
    namespace: str | None = None,
    source: str = "<manifest>",
    randbytes: Callable[[int], bytes] = os.urandom,
) -> dict[str, Any]:
    """Turn a Secret manifest into a SealedSecret for *recipients* (a SOPS document).

    *namespace* fills in a manifest without one and must agree with one that has it: a
    SealedSecret is bound to one namespace and name.
    """
    secret = _secret_of(manifest, source=source)
    name = secret.metadata.name
    ns = _namespace(secret.metadata.namespace, namespace, source=source)
    # Bound to a namespace and name the API server would refuse, it could never be applied.
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        raise SealingError(
            f"{source}: metadata.name {name[:64]!r} is not a valid Secret name "
            "(lowercase letters, digits, '-' and '.')"
        )
    if len(ns) > 63 or "." in ns or not DNS1123_SUBDOMAIN.match(ns):
        raise SealingError(
            f"{source}: namespace {ns[:64]!r} is not a valid namespace name "
            "(lowercase letters, digits and '-', at most 63)"
        )
    data = _values(secret.data, "data", source=source)
    string_data = _values(secret.string_data, "stringData", source=source)
    if not data and not string_data:
        raise SealingError(f"{source}: Secret {ns}/{name} has no data or stringData to seal")
    for key, value in data.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise SealingError(
                f"{source}: data.{key} is not base64 (put clear text under stringData)"
            ) from None
    spec: dict[str, Any] = {"template": _template_of(secret)}
    if data:
        spec["data"] = data
    if string_data:
        spec["stringData"] = string_data
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": ns,
            "annotations": {ANNOTATION_SEALED_FOR: f"{ns}/{name}"},
        },
        "spec": spec,
    }
    return sops.encrypt(
        document,
        recipients,
        now=now,
        rule=_RULE,
        mac_only_encrypted=True,
        randbytes=randbytes,
        source=source,
    )


def _secret_of(manifest: Mapping[str, Any], *, source: str) -> _Secret:
    if not isinstance(manifest, Mapping):
        raise SealingError(f"{source}: not a Kubernetes object (expected a mapping)")
    if sops.is_encrypted(manifest):
        raise SealingError(f"{source}: already encrypted with sops (unseal it first)")
    kind, api_version = manifest.get("kind"), manifest.get("apiVersion")
    if kind != "Secret" or api_version != "v1":
        raise SealingError(f"{source}: {_kind_text(api_version, kind)} is not a v1 Secret")
    return _validated(_Secret, manifest, source=source, what="Secret manifest")


def _kind_text(api_version: object, kind: object) -> str:
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return "the document"
    return f"{api_version[:64]} {kind[:64]}"


def _namespace(in_manifest: str | None, given: str | None, *, source: str) -> str:
    if in_manifest and given and in_manifest != given:
        raise SealingError(
            f"{source}: the manifest's namespace is {in_manifest}, --namespace says {given}"
        )
    ns = in_manifest or given
    if not ns:
        raise SealingError(
            f"{source}: metadata.namespace is missing: a SealedSecret is bound to one "
            "namespace (add it, or pass --namespace)"
        )
    return ns


def _values(values: Mapping[str, str | None] | None, field: str, *, source: str) -> dict[str, str]:
    """The values of *field* in sorted key order (the API server's order: the MAC's)."""
    out: dict[str, str] = {}
    for key in sorted(values or {}):
        value = (values or {})[key]
        if not _SECRET_KEY.fullmatch(key):
            raise SealingError(
                f"{source}: {field}: {key[:64]!r} is not a valid Secret key "
                "(letters, digits, '-', '_', '.')"
            )
        if not value:
            raise SealingError(
                f"{source}: {field}.{key} is empty: sops leaves empty values unencrypted "
                "and unauthenticated (drop the key or give it a value)"
            )
        out[key] = value
    return out


def _template_of(secret: _Secret) -> dict[str, Any]:
    template: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    if secret.metadata.labels:
        meta["labels"] = dict(secret.metadata.labels)
    annotations = {
        k: v
        for k, v in (secret.metadata.annotations or {}).items()
        if k not in _DROPPED_ANNOTATIONS
    }
    if annotations:
        meta["annotations"] = annotations
    if meta:
        template["metadata"] = meta
    template["type"] = secret.type or "Opaque"
    if secret.immutable is not None:
        template["immutable"] = secret.immutable
    return template


def keys_sorted(document: Mapping[str, Any]) -> bool:
    """True if the encrypted values come in sorted key order, as the API server returns them.

    The MAC follows document order, and a SealedSecret read back from the cluster has every
    map sorted; a file whose encrypted keys are not sorted (``sops edit`` appends new keys)
    opens offline but not from the cluster. ``kustos seal`` always writes them sorted.
    """
    body = {k: v for k, v in document.items() if k != sops.METADATA_KEY}
    return list(_encrypted_paths(body, (), ordered=False)) == list(
        _encrypted_paths(body, (), ordered=True)
    )


def _encrypted_paths(
    value: Any, keys: tuple[str, ...], *, ordered: bool
) -> Iterator[tuple[str, ...]]:
    if isinstance(value, Mapping):
        items = list(value.items())
        if ordered:
            items.sort(key=lambda item: str(item[0]))
        for key, item in items:
            yield from _encrypted_paths(item, (*keys, str(key)), ordered=ordered)
    elif isinstance(value, list):
        for item in value:
            yield from _encrypted_paths(item, keys, ordered=ordered)
    elif value is not None and _RULE.encrypts(keys):
        yield keys


# --------------------------------------------------------------------------- unseal


def unseal(
    document: Mapping[str, Any], identities: sops.Identities, *, source: str = "<document>"
) -> dict[str, Any]:
    """Return the Secret manifest held by a SealedSecret or a sops-encrypted Secret.

    Every value and the MAC are verified; a SealedSecret must also sit at the namespace and
    name it was sealed for (:class:`BindingError` otherwise). Values never reach an error.
    """
    if not isinstance(document, Mapping):
        raise SealingError(f"{source}: not a Kubernetes object (expected a mapping)")
    kind, api_version = document.get("kind"), document.get("apiVersion")
    is_sealed = kind == KIND and api_version == API_VERSION
    if not is_sealed and not (kind == "Secret" and api_version == "v1"):
        raise SealingError(
            f"{source}: {_kind_text(api_version, kind)} is neither a {API_VERSION} "
            f"{KIND} nor a v1 Secret"
        )
    if not sops.is_encrypted(document):
        raise SealingError(f"{source}: not encrypted (no top-level sops block)")
    if is_sealed:
        return _unseal_sealed(document, identities, source=source)
    opened = sops.decrypt(document, identities, source=source)
    _validated(_Secret, opened.document, source=source, what="Secret manifest")
    return opened.document


def _unseal_sealed(
    document: Mapping[str, Any], identities: sops.Identities, *, source: str
) -> dict[str, Any]:
    meta = document.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    if not isinstance(name, str) or not name:
        raise SealingError(f"{source}: the {KIND} has no metadata.name")
    opened = sops.decrypt(document, identities, source=source)
    rule = opened.metadata.rule
    if not all(
        rule.encrypts(path) for path in (_BINDING_PATH, ("spec", "data"), ("spec", "stringData"))
    ):
        raise SealingError(
            f"{source}: sops.{rule.kind} leaves the values or the {ANNOTATION_SEALED_FOR} "
            "binding in clear; not a SealedSecret written by kustos seal"
        )
    sealed_for = _sealed_for(opened.document, source=source)
    if not isinstance(namespace, str) or not namespace:
        raise BindingError(
            f"{source}: the {KIND} has no metadata.namespace; it was sealed for {sealed_for}"
        )
    here = f"{namespace}/{name}"
    if here != sealed_for:
        raise BindingError(
            f"{source}: {KIND} {here} was sealed for {sealed_for}: a moved or renamed copy is "
            f"refused (seal the Secret again for {here})"
        )
    spec = _validated(_SealedSpec, opened.document.get("spec"), source=source, what=f"{KIND} spec")
    for field, values in (("data", spec.data), ("stringData", spec.string_data)):
        for key, value in (values or {}).items():
            if not value:
                raise SealingError(
                    f"{source}: spec.{field}.{key} is empty: sops does not authenticate empty "
                    "values, and kustos seal never writes one; refused"
                )
    return _secret_manifest(namespace, name, spec)


def _sealed_for(plain: Mapping[str, Any], *, source: str) -> str:
    meta = plain.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = annotations.get(ANNOTATION_SEALED_FOR) if isinstance(annotations, Mapping) else None
    if not isinstance(value, str) or value.count("/") != 1 or value.startswith("/"):
        raise BindingError(
            f"{source}: no valid {ANNOTATION_SEALED_FOR} annotation; not bound to a namespace "
            "and name, refused"
        )
    return value


def _secret_manifest(namespace: str, name: str, spec: _SealedSpec) -> dict[str, Any]:
    template = spec.template or _Template()
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if template.metadata and template.metadata.labels:
        metadata["labels"] = dict(template.metadata.labels)
    if template.metadata and template.metadata.annotations:
        metadata["annotations"] = dict(template.metadata.annotations)
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": template.type or "Opaque",
    }
    if template.immutable is not None:
        manifest["immutable"] = template.immutable
    if spec.data:
        manifest["data"] = dict(spec.data)
    if spec.string_data:
        manifest["stringData"] = dict(spec.string_data)
    return manifest


# --------------------------------------------------------------------------- the cluster's key

#: Where the operator publishes the cluster's sealing recipients (a ConfigMap: public).
RECIPIENT_CONFIGMAP: Final = "kube-system/kustos-sealing"
#: Its keys: the current recipient, and the older ones kept for unsealing (one per line).
RECIPIENT_KEY: Final = "recipient"
PREVIOUS_KEY: Final = "previous"
KEY_IDS_KEY: Final = "keyIds"


def configmap_ref(text: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` of the recipient ConfigMap; ``InputError`` for anything else."""
    namespace, slash, name = text.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise SealingError(f"{text[:64]!r} is not NAMESPACE/NAME")
    return namespace, name


def published_data(current: str, previous: Sequence[str], key_ids: Sequence[str]) -> dict[str, str]:
    """The ConfigMap data that publishes the recipients (public keys and ids only)."""
    return {
        RECIPIENT_KEY: current + "\n",
        PREVIOUS_KEY: "".join(f"{r}\n" for r in previous),
        KEY_IDS_KEY: "".join(f"{k}\n" for k in key_ids),
    }


def published_recipients(
    data: Mapping[str, Any] | None, *, source: str
) -> tuple[sops.Recipient, tuple[sops.Recipient, ...]]:
    """The current recipient and the older ones, from a published ConfigMap's data."""
    text = (data or {}).get(RECIPIENT_KEY)
    if not isinstance(text, str) or not text.strip():
        raise SealingError(
            f"{source} has no {RECIPIENT_KEY}: the operator publishes it once it has a "
            "sealing key (kustos kms sealing-key create, then operator --sealing-*)"
        )
    current = sops.Recipient.parse(text, where=f"{source}: {RECIPIENT_KEY}")
    older = (data or {}).get(PREVIOUS_KEY) or ""
    previous = (
        sops.parse_recipients(older, source=f"{source}: {PREVIOUS_KEY}")
        if isinstance(older, str) and older.strip()
        else ()
    )
    return current, previous


def reseal(
    document: Mapping[str, Any],
    identities: sops.Identities,
    *,
    add: Sequence[sops.Recipient],
    drop: Sequence[str] = (),
    source: str = "<document>",
) -> sops.Rewrapped:
    """*document* for its recipients minus *drop*, plus *add*; values, MAC, binding unchanged.

    The file is unsealed first (every value, the MAC and, for a SealedSecret, the
    namespace/name binding are checked), so a file that would be refused is never
    rewritten. Only the ``sops.age`` stanzas change (see :func:`sops.rewrap`).
    """
    unseal(document, identities, source=source)
    meta = document[sops.METADATA_KEY]
    dropped = set(drop) - {r.text for r in add}
    existing = [
        sops.Recipient.parse(str(s.get("recipient", "")), where=f"{source}: sops.age")
        for s in (meta.get("age") or [])
        if isinstance(s, Mapping)
    ]
    wanted = [r for r in existing if r.text not in dropped] + list(add)
    if not wanted:
        raise SealingError(f"{source}: no recipient would be left; give --recipient")
    return sops.rewrap(document, identities, wanted, source=source)
