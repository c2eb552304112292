"""Which LIST calls a listing makes: kinds, namespaces and the kinds read everywhere.

Aspects: namespaced kinds are listed in each namespace asked for, or once across all of
them; kinds named in ``everywhere`` are listed across all namespaces even when namespaces
are asked for (who-can reads one namespace's Secrets but every namespace's RBAC objects);
cluster-scoped kinds are listed once; Namespaces asked by name keep only those names.
"""

from __future__ import annotations

from kustos.kube.listing import _calls


def _scopes(
    kinds: list[str], namespaces: list[str], everywhere: set[str]
) -> list[tuple[str, str | None, frozenset[str] | None]]:
    return [
        (call.kind, call.scope, call.only)
        for call in _calls(kinds, namespaces, frozenset(everywhere))
    ]


def test_everywhere_kinds_ignore_the_namespaces_asked_for() -> None:
    kinds = ["Secret", "Role", "ClusterRole", "RoleBinding", "Deployment"]
    assert _scopes(kinds, ["shop", "vault"], {"Role", "RoleBinding", "ClusterRole"}) == [
        ("Secret", "shop", None),
        ("Secret", "vault", None),
        ("Role", "*", None),
        ("ClusterRole", None, None),
        ("RoleBinding", "*", None),
        ("Deployment", "shop", None),
        ("Deployment", "vault", None),
    ]


def test_without_namespaces_every_namespaced_kind_is_listed_once() -> None:
    assert _scopes(["Namespace", "Secret", "Role"], [], {"Role"}) == [
        ("Namespace", None, None),
        ("Secret", "*", None),
        ("Role", "*", None),
    ]


def test_namespaces_asked_by_name_keep_only_those() -> None:
    assert _scopes(["Namespace"], ["shop"], set()) == [("Namespace", None, frozenset({"shop"}))]
