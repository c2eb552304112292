"""Sealing a Secret into a SealedSecret and unsealing it (``kustos.sources.sealing``).

Aspects: a Secret survives seal → unseal (labels, annotations without kubectl's
last-applied copy, type, immutable, data, stringData); the SealedSecret keeps apiVersion,
kind, name and namespace readable, encrypts the values and the ``kustos.io/sealed-for``
binding, sorts keys and uses ``mac_only_encrypted``; a copy moved to another namespace,
renamed, stripped of its namespace or binding, or given another file's binding is refused;
the object as the API server returns it (extra metadata, status, every map sorted) still
unseals; empty values are refused both ways; manifests that are not Secrets, not base64,
not strings, with bad keys or no namespace are refused naming the field; a weakened rule is
refused; a Secret encrypted the way ``sops -e --encrypted-regex '^(data|stringData)$'``
does is accepted and its MAC covers its name; tampering and wrong identities are refused;
no value appears in any error.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kustos.conventions import ANNOTATION_SEALED_FOR
from kustos.crypto import sops
from kustos.errors import InputError
from kustos.sources import sealing
from tests.unit.sources.sealkit import CANARY, CANARY_B64, NOW, Key, secret_manifest, tamper


def _sealed(key: Key, **overrides: Any) -> dict[str, Any]:
    return sealing.seal(secret_manifest(**overrides), [key.recipient], now=NOW, source="s.yaml")


def test_a_secret_survives_seal_and_unseal() -> None:
    key = Key()
    manifest = secret_manifest(immutable=True)
    manifest["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = (
        json.dumps({"stringData": {"password": CANARY}})
    )
    manifest["metadata"]["uid"] = "1234"
    sealed = sealing.seal(manifest, [key.recipient], now=NOW)
    assert sealing.unseal(sealed, key.identities) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db",
            "namespace": "prod",
            "labels": {"app": "web"},
            "annotations": {"team": "payments"},
        },
        "type": "Opaque",
        "immutable": True,
        "data": {"token": CANARY_B64},
        "stringData": {"password": CANARY, "username": "admin"},
    }
    assert CANARY not in json.dumps(sealed)


def test_the_sealed_secret_keeps_metadata_readable_and_encrypts_values_and_binding() -> None:
    key = Key()
    sealed = _sealed(key)
    assert sealed["apiVersion"] == "kustos.io/v1alpha1"
    assert sealed["kind"] == "SealedSecret"
    assert sealed["metadata"]["name"] == "db"
    assert sealed["metadata"]["namespace"] == "prod"
    binding = sealed["metadata"]["annotations"][ANNOTATION_SEALED_FOR]
    assert binding.startswith("ENC[AES256_GCM,")
    assert sealed["spec"]["template"] == {
        "metadata": {"labels": {"app": "web"}, "annotations": {"team": "payments"}},
        "type": "Opaque",
    }
    assert list(sealed["spec"]["stringData"]) == ["password", "username"]  # sorted
    assert all(v.startswith("ENC[") for v in sealed["spec"]["stringData"].values())
    assert sealed["sops"]["encrypted_regex"] == sealing.SEALED_REGEX
    assert sealed["sops"]["mac_only_encrypted"] is True
    assert list(sealed) == ["apiVersion", "kind", "metadata", "spec", "sops"]
    # Anyone holding a key sees the binding in clear, as `sops -d` shows it.
    plain = sops.decrypt(sealed, key.identities).document
    assert plain["metadata"]["annotations"][ANNOTATION_SEALED_FOR] == "prod/db"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(namespace="staging"), "SealedSecret staging/db was sealed for prod/db"),
        (lambda m: m.update(name="db-admin"), "SealedSecret prod/db-admin was sealed for prod/db"),
        (lambda m: m.pop("namespace"), "has no metadata.namespace; it was sealed for prod/db"),
    ],
)
def test_a_moved_or_renamed_copy_is_refused(change: Any, message: str) -> None:
    key = Key()
    sealed = _sealed(key)
    change(sealed["metadata"])
    with pytest.raises(sealing.BindingError, match=message) as err:
        sealing.unseal(sealed, key.identities, source="copy.yaml")
    assert str(err.value).startswith("copy.yaml: ")
    assert CANARY not in str(err.value)


def test_a_binding_copied_from_another_sealed_secret_is_refused() -> None:
    key = Key()
    mine = _sealed(key)
    theirs = _sealed(key, metadata={"name": "db", "namespace": "staging"})
    forged = copy.deepcopy(theirs)
    forged["metadata"]["namespace"] = "prod"
    forged["metadata"]["annotations"] = mine["metadata"]["annotations"]
    with pytest.raises(sops.TamperedValueError, match=r"metadata\.annotations\[\"kustos\.io"):
        sealing.unseal(forged, key.identities)


def test_a_missing_or_clear_binding_is_refused() -> None:
    key = Key()
    sealed = _sealed(key)
    del sealed["metadata"]["annotations"]
    # The binding is one of the MAC's values: without it the MAC fails first.
    with pytest.raises(sops.MacMismatchError):
        sealing.unseal(sealed, key.identities)
    weakened = _sealed(key)
    weakened["sops"]["encrypted_regex"] = sops.KUBERNETES_REGEX
    weakened["metadata"]["annotations"][ANNOTATION_SEALED_FOR] = "prod/db"
    with pytest.raises(InputError):
        sealing.unseal(weakened, key.identities)


def test_a_sealed_secret_without_a_binding_is_refused_even_if_it_authenticates() -> None:
    key = Key()
    document = {
        "apiVersion": "kustos.io/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "db", "namespace": "prod"},
        "spec": {"stringData": {"password": CANARY}},
    }
    rule = sops.Rule("encrypted_regex", sealing.SEALED_REGEX)
    sealed = sops.encrypt(document, [key.recipient], now=NOW, rule=rule, mac_only_encrypted=True)
    with pytest.raises(sealing.BindingError, match=r"no valid kustos\.io/sealed-for"):
        sealing.unseal(sealed, key.identities)


def _as_the_api_server_returns_it(sealed: dict[str, Any]) -> dict[str, Any]:
    served = copy.deepcopy(sealed)
    served["metadata"].update(
        uid="0d6f",
        resourceVersion="812",
        generation=1,
        creationTimestamp="2026-03-04T05:06:09Z",
        managedFields=[{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:data": {}}}}],
    )
    served["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    served["status"] = {"conditions": [{"type": "Ready", "status": "True"}], "currentVersion": 3}
    result: dict[str, Any] = json.loads(json.dumps(served, sort_keys=True))
    return result


def test_the_object_read_back_from_the_api_server_still_unseals() -> None:
    key = Key()
    manifest = secret_manifest()
    manifest["stringData"] = {"zeta": CANARY, "alpha": "a", "mid": "m"}  # unsorted on input
    sealed = sealing.seal(manifest, [key.recipient], now=NOW)
    served = _as_the_api_server_returns_it(sealed)
    assert list(served) != list(sealed)  # top-level order changed (sops before spec)
    assert sealing.unseal(served, key.identities)["stringData"] == {
        "alpha": "a",
        "mid": "m",
        "zeta": CANARY,
    }


def test_a_file_edited_out_of_order_opens_offline_but_not_once_sorted_by_the_server() -> None:
    key = Key()
    sealed = _sealed(key)
    plain = sops.decrypt(sealed, key.identities).document
    plain["spec"]["stringData"]["aaa"] = "added by sops edit"  # appended, as sops set does
    rule = sops.Rule("encrypted_regex", sealing.SEALED_REGEX)
    edited = sops.encrypt(plain, [key.recipient], now=NOW, rule=rule, mac_only_encrypted=True)
    assert sealing.unseal(edited, key.identities)["stringData"]["aaa"] == "added by sops edit"
    assert not sealing.keys_sorted(edited)
    assert sealing.keys_sorted(sealed)
    with pytest.raises(sops.MacMismatchError):
        sealing.unseal(_as_the_api_server_returns_it(edited), key.identities)


def test_empty_values_are_refused_when_sealing_and_when_unsealing() -> None:
    key = Key()
    for field in ("data", "stringData"):
        for empty in ("", None):
            with pytest.raises(sealing.SealingError, match=rf"{field}\.gone is empty"):
                sealing.seal(secret_manifest(**{field: {"gone": empty}}), [key.recipient], now=NOW)
    sealed = _sealed(key)
    sealed["spec"]["stringData"]["added"] = ""  # sops does not authenticate ""
    with pytest.raises(sealing.SealingError, match=r"spec\.stringData\.added is empty"):
        sealing.unseal(sealed, key.identities)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}},
            "v1 ConfigMap is not a v1 Secret",
        ),
        (["not", "a", "mapping"], "expected a mapping"),
        (secret_manifest(data={"token": "not base64!"}), r"data\.token is not base64"),
        (
            secret_manifest(stringData={"port": 5432}),
            r"stringData\.port: Input should be a valid string",
        ),
        (secret_manifest(stringData={"bad/key": "x"}), "'bad/key' is not a valid Secret key"),
        (secret_manifest(data=None, stringData=None), "has no data or stringData"),
        (secret_manifest(metadata={"name": "db"}), "metadata.namespace is missing"),
        (secret_manifest(metadata={"namespace": "prod"}), r"metadata\.name: Field required"),
        ({**secret_manifest(), "sops": {"mac": "x"}}, "already encrypted"),
    ],
)
def test_manifests_that_cannot_be_sealed_are_refused_naming_the_field(
    manifest: Any, message: str
) -> None:
    key = Key()
    with pytest.raises(sealing.SealingError, match=message) as err:
        sealing.seal(manifest, [key.recipient], now=NOW, source="in.yaml")
    assert str(err.value).startswith("in.yaml: ")
    assert CANARY not in str(err.value)


def test_the_namespace_option_fills_in_and_must_agree() -> None:
    key = Key()
    bare = secret_manifest(metadata={"name": "db"})
    sealed = sealing.seal(bare, [key.recipient], now=NOW, namespace="team")
    assert sealing.unseal(sealed, key.identities)["metadata"]["namespace"] == "team"
    with pytest.raises(sealing.SealingError, match="namespace is prod, --namespace says team"):
        sealing.seal(secret_manifest(), [key.recipient], now=NOW, namespace="team")


def _sops_encrypted_secret(key: Key, *, mac_only: bool = False) -> dict[str, Any]:
    """A Secret as `sops -e --age R --encrypted-regex '^(data|stringData)$'` writes it."""
    rule = sops.Rule("encrypted_regex", sops.KUBERNETES_REGEX)
    return sops.encrypt(
        secret_manifest(), [key.recipient], now=NOW, rule=rule, mac_only_encrypted=mac_only
    )


def test_a_secret_encrypted_by_sops_is_accepted() -> None:
    key = Key()
    assert sealing.unseal(_sops_encrypted_secret(key), key.identities) == secret_manifest()


def test_a_sops_secret_renamed_breaks_its_mac_in_the_default_mode() -> None:
    key = Key()
    renamed = _sops_encrypted_secret(key)
    renamed["metadata"]["namespace"] = "staging"
    with pytest.raises(sops.MacMismatchError):
        sealing.unseal(renamed, key.identities)


def test_tampering_and_wrong_identities_are_refused() -> None:
    key, stranger = Key(), Key()
    sealed = _sealed(key)
    with pytest.raises(sops.NoMatchingIdentityError):
        sealing.unseal(sealed, stranger.identities)
    tampered = copy.deepcopy(sealed)
    tampered["spec"]["stringData"]["password"] = tamper(sealed["spec"]["stringData"]["password"])
    with pytest.raises(sops.TamperedValueError, match=r"spec\.stringData\.password"):
        sealing.unseal(tampered, key.identities)
    swapped = copy.deepcopy(sealed)
    swapped["spec"]["stringData"]["password"] = sealed["spec"]["stringData"]["username"]
    with pytest.raises(sops.TamperedValueError, match=r"spec\.stringData\.password"):
        sealing.unseal(swapped, key.identities)
    dropped = copy.deepcopy(sealed)
    del dropped["spec"]["stringData"]["username"]
    with pytest.raises(sops.MacMismatchError):
        sealing.unseal(dropped, key.identities)
    bad_mac = copy.deepcopy(sealed)
    bad_mac["sops"]["mac"] = tamper(sealed["sops"]["mac"])
    with pytest.raises(sops.MacMismatchError):
        sealing.unseal(bad_mac, key.identities)


def test_several_recipients_each_unseal() -> None:
    cluster, backup = Key(), Key()
    sealed = sealing.seal(secret_manifest(), [cluster.recipient, backup.recipient], now=NOW)
    assert sealing.unseal(sealed, cluster.identities) == sealing.unseal(sealed, backup.identities)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (secret_manifest(), "not encrypted"),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "sops": {}},
            "neither a kustos.io/v1alpha1 SealedSecret nor a v1 Secret",
        ),
        ("text", "expected a mapping"),
    ],
)
def test_documents_that_are_not_sealed_are_refused(document: Any, message: str) -> None:
    with pytest.raises(sealing.SealingError, match=message):
        sealing.unseal(document, Key().identities)


def test_no_failure_shows_a_value() -> None:
    key, stranger = Key(), Key()
    sealed = _sealed(key)
    broken: list[tuple[Any, sops.Identities]] = [(sealed, stranger.identities)]
    for path in (("spec", "stringData", "password"), ("spec", "data", "token")):
        copied = copy.deepcopy(sealed)
        parent = copied
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = parent[path[-1]].replace("type:str", "type:int")
        broken.append((copied, key.identities))
    moved = copy.deepcopy(sealed)
    moved["metadata"]["namespace"] = "x"
    broken.append((moved, key.identities))
    for document, identities in broken:
        with pytest.raises(InputError) as err:
            sealing.unseal(document, identities)
        assert CANARY not in str(err.value)
        assert CANARY not in repr(err.value)
        assert CANARY_B64 not in str(err.value)
