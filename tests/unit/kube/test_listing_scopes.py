"""Which LIST calls a listing makes: kinds and namespaces.

Aspects: namespaced kinds are listed in each namespace asked for, or once across all of
them; cluster-scoped kinds are listed once, whatever the namespaces; Namespaces asked by
name keep only those names; namespaces asked as "within" are one cluster-wide list per
namespaced kind that keeps only their items (and Namespaces of those names).
"""

from __future__ import annotations

from kustos.kube.listing import _calls


def _scopes(
    kinds: list[str], namespaces: list[str]
) -> list[tuple[str, str | None, frozenset[str] | None]]:
    return [(call.kind, call.scope, call.only) for call in _calls(kinds, namespaces, None)]


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


def test_within_lists_each_namespaced_kind_once_and_keeps_only_those_namespaces() -> None:
    within = frozenset({"shop", "vault"})
    calls = _calls(["Namespace", "Role", "ClusterRole", "RoleBinding"], [], within)
    assert [(c.kind, c.scope, c.only, c.within) for c in calls] == [
        ("Namespace", None, within, None),
        ("Role", "*", None, within),
        ("ClusterRole", None, None, None),
        ("RoleBinding", "*", None, within),
    ]
    role = calls[1]
    assert role.keeps({"metadata": {"name": "r", "namespace": "shop"}})
    assert not role.keeps({"metadata": {"name": "r", "namespace": "elsewhere"}})
    assert not role.keeps({"metadata": {"name": "r"}})
    assert calls[2].keeps({"metadata": {"name": "admin"}})  # cluster-scoped: kept
