"""Which LIST calls a listing makes: kinds and namespaces.

Aspects: namespaced kinds are listed in each namespace asked for, or once across all of
them; cluster-scoped kinds are listed once, whatever the namespaces; Namespaces asked by
name keep only those names.
"""

from __future__ import annotations

from kustos.kube.listing import _calls


def _scopes(
    kinds: list[str], namespaces: list[str]
) -> list[tuple[str, str | None, frozenset[str] | None]]:
    return [(call.kind, call.scope, call.only) for call in _calls(kinds, namespaces)]


def test_namespaced_kinds_are_listed_in_each_namespace_asked_for() -> None:
    kinds = ["Secret", "Role", "ClusterRole", "RoleBinding"]
    assert _scopes(kinds, ["shop", "vault"]) == [
        ("Secret", "shop", None),
        ("Secret", "vault", None),
        ("Role", "shop", None),
        ("Role", "vault", None),
        ("ClusterRole", None, None),
        ("RoleBinding", "shop", None),
        ("RoleBinding", "vault", None),
    ]


def test_without_namespaces_every_namespaced_kind_is_listed_once() -> None:
    assert _scopes(["Namespace", "Secret", "Role"], []) == [
        ("Namespace", None, None),
        ("Secret", "*", None),
        ("Role", "*", None),
    ]


def test_namespaces_asked_by_name_keep_only_those() -> None:
    assert _scopes(["Namespace"], ["shop"]) == [("Namespace", None, frozenset({"shop"}))]
