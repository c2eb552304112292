"""Generate synthetic clusters as multi-document YAML files: same seed, same bytes.

Two shapes. ``cluster_objects`` makes the ``kustos scan`` workload: namespaces that look
like a real platform's (Deployments, StatefulSets and CronJobs that use Secrets through
``secretKeyRef``, ``envFrom``, secret and projected volumes and ``imagePullSecrets``;
Secrets of several types; ConfigMaps of which a few leak credentials; ServiceAccounts,
Roles and RoleBindings of which some hand out ``get``/``list`` on Secrets, a few to
``system:authenticated``; ClusterRoles and bindings; NetworkPolicies). ``whocan_objects``
makes the ``kustos who-can --matrix`` workload: one namespace with many Secrets and
thousands of (Cluster)RoleBindings of varying breadth around it.

Every value is fake and made from the seeded generator (the AWS-looking keys end in
``EXAMPLE`` like AWS's own documentation keys). YAML is written by a small emitter of our
own rather than PyYAML's: it is several times faster and writes the block style people
write by hand, which is what the scanners are normally fed. ``--verify`` parses the files
back and compares them with what was generated.

    python -m bench.synth --objects 10000 --out bench/.work/scan-10000
    python -m bench.synth --whocan --out bench/.work/whocan
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import shutil
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

Obj = dict[str, Any]

DEFAULT_SEED: Final = 20240611
DEFAULT_PER_FILE: Final = 250
WHOCAN_NAMESPACE: Final = "vault-prod"

_TEAMS: Final = (
    "payments", "checkout", "identity", "search", "catalog", "billing", "ledger",
    "growth", "risk", "mobile", "platform", "data", "ml", "support", "media", "logistics",
)  # fmt: skip
_ENVS: Final = ("prod", "staging", "dev", "qa", "perf")
_APPS: Final = (
    "api", "web", "worker", "gateway", "auth", "orders", "invoices", "notifier", "mailer",
    "reports", "ingest", "scheduler", "indexer", "cache-warmer", "exporter", "sync",
    "webhook", "admin", "frontend", "pricing", "inventory", "events", "audit", "session",
)  # fmt: skip
_RBAC_GROUP: Final = "rbac.authorization.k8s.io"
_ALNUM: Final = string.ascii_letters + string.digits
_UPPER_ALNUM: Final = string.ascii_uppercase + string.digits


# --------------------------------------------------------------------------- YAML emitter

_PLAIN: Final = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@:+=-]*")
_RESERVED: Final = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def _scalar(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and not text.endswith(":") and text.lower() not in _RESERVED:
        return text
    # A JSON string is a valid YAML double-quoted scalar.
    return json.dumps(text)


def _block(text: str) -> str | None:
    """Return the ``|`` / ``|-`` header if *text* can be written as a literal block."""
    if "\n" not in text or text[0] in " \n" or text.endswith("\n\n"):
        return None
    if not all(ch.isprintable() or ch == "\n" for ch in text):
        return None
    return "|" if text.endswith("\n") else "|-"


def _emit_map(value: Obj, indent: int, out: list[str]) -> None:
    pad = " " * indent
    for key, item in value.items():
        name = _scalar(key)
        if isinstance(item, dict):
            if item:
                out.append(f"{pad}{name}:")
                _emit_map(item, indent + 2, out)
            else:
                out.append(f"{pad}{name}: {{}}")
        elif isinstance(item, list):
            if item:
                out.append(f"{pad}{name}:")
                _emit_seq(item, indent, out)
            else:
                out.append(f"{pad}{name}: []")
        elif isinstance(item, str) and (header := _block(item)) is not None:
            out.append(f"{pad}{name}: {header}")
            out.extend(f"{pad}  {line}" if line else "" for line in item.rstrip("\n").split("\n"))
        else:
            out.append(f"{pad}{name}: {_scalar(item)}")


def _emit_seq(value: list[Any], indent: int, out: list[str]) -> None:
    # kubectl's style: the dash sits at the indentation of the key that owns the list.
    pad = " " * indent
    for item in value:
        if isinstance(item, dict) and item:
            start = len(out)
            _emit_map(item, indent + 2, out)
            out[start] = f"{pad}- {out[start][indent + 2 :]}"
        elif isinstance(item, list) and item:
            out.append(f"{pad}-")
            _emit_seq(item, indent + 2, out)
        elif isinstance(item, dict):
            out.append(f"{pad}- {{}}")
        elif isinstance(item, list):
            out.append(f"{pad}- []")
        else:
            out.append(f"{pad}- {_scalar(item)}")


def to_yaml(documents: Sequence[Obj]) -> str:
    """Render *documents* as one multi-document YAML stream."""
    out: list[str] = []
    for doc in documents:
        out.append("---")
        _emit_map(doc, 0, out)
    out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- fake values


def _token(rng: random.Random, length: int, alphabet: str = _ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=length))


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def _pem(rng: random.Random, label: str, size: int) -> str:
    body = _b64(rng.randbytes(size))
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""])


def _aws_key_id(rng: random.Random) -> str:
    return f"AKIA{_token(rng, 9, _UPPER_ALNUM)}EXAMPLE"


def _aws_secret_key(rng: random.Random) -> str:
    return f"{_token(rng, 30)}EXAMPLEKEY"


def _password(rng: random.Random) -> str:
    return f"{rng.choice(('Winter', 'Summer', 'Passw0rd', 'Secret', 'Admin'))}{_token(rng, 8)}!"


# --------------------------------------------------------------------------- object builders


def _meta(name: str, namespace: str | None = None, **labels: str) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def _app_labels(app: str, team: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/part-of": team,
        "app.kubernetes.io/managed-by": "helm",
    }


def _secret(
    name: str, namespace: str, data: dict[str, str], *, kind: str = "Opaque", **labels: str
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(name, namespace, **labels),
        "type": kind,
        "data": {key: _b64(value) for key, value in data.items()},
    }


def _pull_secret(rng: random.Random, name: str, namespace: str) -> Obj:
    user = f"robot-{_token(rng, 6).lower()}"
    auth = _b64(f"{user}:{_token(rng, 24)}")
    config = {"auths": {"registry.example.com": {"username": user, "auth": auth}}}
    return _secret(
        name,
        namespace,
        {".dockerconfigjson": json.dumps(config)},
        kind="kubernetes.io/dockerconfigjson",
    )


def _tls_secret(rng: random.Random, name: str, namespace: str) -> Obj:
    return _secret(
        name,
        namespace,
        {"tls.crt": _pem(rng, "CERTIFICATE", 420), "tls.key": _pem(rng, "PRIVATE KEY", 180)},
        kind="kubernetes.io/tls",
    )


def _role(name: str, namespace: str | None, rules: list[Obj], **labels: str) -> Obj:
    return {
        "apiVersion": f"{_RBAC_GROUP}/v1",
        "kind": "ClusterRole" if namespace is None else "Role",
        "metadata": _meta(name, namespace, **labels),
        "rules": rules,
    }


def _rule(resources: list[str], verbs: list[str], *, groups: Sequence[str] = ("",)) -> Obj:
    return {"apiGroups": list(groups), "resources": resources, "verbs": verbs}


def _binding(name: str, namespace: str | None, role: tuple[str, str], subjects: list[Obj]) -> Obj:
    """Bind *role* (kind, name) to *subjects*; no namespace makes a ClusterRoleBinding."""
    return {
        "apiVersion": f"{_RBAC_GROUP}/v1",
        "kind": "ClusterRoleBinding" if namespace is None else "RoleBinding",
        "metadata": _meta(name, namespace),
        "roleRef": {"apiGroup": _RBAC_GROUP, "kind": role[0], "name": role[1]},
        "subjects": subjects,
    }


def _secret_env(name: str, secret: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _named_rule(names: list[str], verbs: list[str]) -> Obj:
    return {"apiGroups": [""], "resources": ["secrets"], "resourceNames": names, "verbs": verbs}


def _sa_subject(name: str, namespace: str) -> Obj:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def _subject(kind: str, name: str) -> Obj:
    return {"apiGroup": _RBAC_GROUP, "kind": kind, "name": name}


# --------------------------------------------------------------------------- scan workload


def namespace_name(index: int) -> str:
    """Name the *index*-th namespace; a pure function so cluster objects can point at it."""
    team = _TEAMS[index % len(_TEAMS)]
    env = _ENVS[(index // len(_TEAMS)) % len(_ENVS)]
    return f"{team}-{env}-{index:04d}"


@dataclass(frozen=True, slots=True)
class _App:
    name: str
    namespace: str
    team: str
    db_secret: str
    keys_secret: str | None
    config: str
    pull_secret: str
    tls_secret: str


def _app_objects(rng: random.Random, app: _App) -> list[Obj]:
    objs: list[Obj] = []
    labels = _app_labels(app.name, app.team)
    db = {
        "username": f"{app.name.replace('-', '_')}_svc",
        "password": _password(rng),
        "url": f"postgres://{app.name}-db.{app.namespace}.svc:5432/{app.name}",
    }
    secret = _secret(app.db_secret, app.namespace, db, **labels)
    if rng.random() < 0.05:
        # What ``kubectl apply`` leaves behind: the values again, in clear.
        applied = {"apiVersion": "v1", "kind": "Secret", "stringData": db}
        secret["metadata"]["annotations"] = {
            "kubectl.kubernetes.io/last-applied-configuration": json.dumps(applied)
        }
    objs.append(secret)
    if app.keys_secret is not None:
        if rng.random() < 0.3:
            objs.append(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": _meta(app.keys_secret, app.namespace, **labels),
                    "type": "Opaque",
                    "stringData": {"API_KEY": _token(rng, 32), "SIGNING_KEY": _token(rng, 48)},
                }
            )
        else:
            objs.append(
                _secret(
                    app.keys_secret,
                    app.namespace,
                    {"API_KEY": _token(rng, 32), "WEBHOOK_SECRET": _token(rng, 40)},
                    **labels,
                )
            )
    objs.append(_configmap(rng, app))
    service_account: Obj = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(app.name, app.namespace, **labels),
    }
    if rng.random() < 0.3:
        service_account["imagePullSecrets"] = [{"name": app.pull_secret}]
    if rng.random() < 0.1:
        service_account["automountServiceAccountToken"] = False
    objs.append(service_account)
    roll = rng.random()
    template = {"metadata": {"labels": labels}, "spec": _pod_spec(rng, app)}
    if roll < 0.65:
        objs.append(
            _workload(
                "apps/v1", "Deployment", app, labels, template=template, replicas=rng.randint(1, 5)
            )
        )
        objs.append(_service(app, labels))
    elif roll < 0.85:
        objs.append(
            _workload(
                "apps/v1", "StatefulSet", app, labels, template=template, replicas=rng.randint(1, 3)
            )
        )
        objs.append(_service(app, labels))
    else:
        template["spec"]["restartPolicy"] = "OnFailure"
        objs.append(
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": _meta(app.name, app.namespace, **labels),
                "spec": {
                    "schedule": f"{rng.randint(0, 59)} */{rng.choice((1, 2, 6, 12))} * * *",
                    "concurrencyPolicy": "Forbid",
                    "jobTemplate": {"spec": {"backoffLimit": 2, "template": template}},
                },
            }
        )
    return objs


def _configmap(rng: random.Random, app: _App) -> Obj:
    data: Obj = {
        "APP_ENV": app.namespace.split("-")[1],
        "LOG_LEVEL": rng.choice(("info", "debug", "warn")),
        "FEATURE_FLAGS": ",".join(rng.sample(("beta", "new-ui", "fast-path", "audit"), k=2)),
        "config.yaml": (
            f"server:\n  port: 8080\n  name: {app.name}\n"
            f"database:\n  host: {app.name}-db.{app.namespace}.svc\n  pool: {rng.randint(5, 50)}\n"
        ),
    }
    leak = rng.random()
    if leak < 0.06:
        data["DB_PASSWORD"] = _password(rng)
    elif leak < 0.10:
        data["AWS_ACCESS_KEY_ID"] = _aws_key_id(rng)
        data["AWS_SECRET_ACCESS_KEY"] = _aws_secret_key(rng)
    elif leak < 0.12:
        data["application.properties"] = (
            f"spring.datasource.url=jdbc:postgresql://{app.name}-db:5432/{app.name}\n"
            f"spring.datasource.username={app.name}\n"
            f"spring.datasource.password={_password(rng)}\n"
        )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(app.config, app.namespace, **_app_labels(app.name, app.team)),
        "data": data,
    }


def _pod_spec(rng: random.Random, app: _App) -> Obj:
    image = (
        f"registry.example.com/{app.team}/{app.name}:"
        f"{rng.choice(('latest', f'1.{rng.randint(0, 30)}.{rng.randint(0, 9)}'))}"
    )
    env: list[Obj] = [
        {"name": "LOG_FORMAT", "value": "json"},
        _secret_env("DB_USER", app.db_secret, "username"),
        _secret_env("DB_PASSWORD", app.db_secret, "password"),
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if rng.random() < 0.05:
        # A reference to a Secret nobody created, marked optional, as legacy charts do.
        ref = {"name": f"{app.name}-legacy", "key": "token", "optional": True}
        env.append({"name": "LEGACY_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    env_from: list[Obj] = [{"configMapRef": {"name": app.config}}]
    if app.keys_secret is not None and rng.random() < 0.5:
        env_from.append({"secretRef": {"name": app.keys_secret}})
    container: Obj = {
        "name": app.name,
        "image": image,
        "imagePullPolicy": rng.choice(("IfNotPresent", "Always")),
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": env,
        "envFrom": env_from,
        "volumeMounts": [
            {"name": "tls", "mountPath": "/etc/tls", "readOnly": True},
            {"name": "bundle", "mountPath": "/var/run/bundle", "readOnly": True},
        ],
    }
    if rng.random() < 0.7:
        container["resources"] = {
            "requests": {"cpu": f"{rng.choice((50, 100, 250))}m", "memory": "128Mi"},
            "limits": {"memory": f"{rng.choice((256, 512, 1024))}Mi"},
        }
    security = rng.random()
    if security < 0.6:
        container["securityContext"] = {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    elif security < 0.65:
        container["securityContext"] = {"privileged": True}
    if rng.random() < 0.5:
        container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": "http"}}
        container["readinessProbe"] = {"httpGet": {"path": "/ready", "port": "http"}}
    config_items = [{"key": "config.yaml", "path": "config.yaml"}]
    bundle: list[Obj] = [{"configMap": {"name": app.config, "items": config_items}}]
    if app.keys_secret is not None:
        key_items = [{"key": "API_KEY", "path": "api-key"}]
        bundle.append({"secret": {"name": app.keys_secret, "items": key_items}})
    token = {"path": "token", "audience": "vault", "expirationSeconds": 3600}
    bundle.append({"serviceAccountToken": token})
    volumes: list[Obj] = [
        {"name": "tls", "secret": {"secretName": app.tls_secret, "defaultMode": 0o440}},
        {"name": "bundle", "projected": {"sources": bundle}},
    ]
    spec: Obj = {"serviceAccountName": app.name, "containers": [container], "volumes": volumes}
    if rng.random() < 0.7:
        spec["imagePullSecrets"] = [{"name": app.pull_secret}]
    if rng.random() < 0.2:
        spec["initContainers"] = [
            {
                "name": "migrate",
                "image": image,
                "command": ["/app/migrate", "--up"],
                "env": env[1:3],
            }
        ]
    return spec


def _workload(
    api_version: str, kind: str, app: _App, labels: dict[str, str], *, template: Obj, replicas: int
) -> Obj:
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app.kubernetes.io/name": app.name}},
        "template": template,
    }
    if kind == "StatefulSet":
        spec["serviceName"] = app.name
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": _meta(app.name, app.namespace, **labels),
        "spec": spec,
    }


def _service(app: _App, labels: dict[str, str]) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(app.name, app.namespace, **labels),
        "spec": {
            "selector": {"app.kubernetes.io/name": app.name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def _namespace_objects(rng: random.Random, index: int) -> list[Obj]:
    ns = namespace_name(index)
    team = ns.split("-")[0]
    objs: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": _meta(ns, None, team=team, **{"kubernetes.io/metadata.name": ns}),
        }
    ]
    pull, tls = f"{team}-registry", f"{team}-tls"
    objs += [_pull_secret(rng, pull, ns), _tls_secret(rng, tls, ns)]
    if rng.random() < 0.2:
        basic = {"username": "admin", "password": _password(rng)}
        objs.append(_secret("admin-basic-auth", ns, basic, kind="kubernetes.io/basic-auth"))
    names = rng.sample(_APPS, k=rng.randint(3, 6))
    apps = [
        _App(
            name=name,
            namespace=ns,
            team=team,
            db_secret=f"{name}-db",
            keys_secret=f"{name}-api-keys" if rng.random() < 0.6 else None,
            config=f"{name}-config",
            pull_secret=pull,
            tls_secret=tls,
        )
        for name in names
    ]
    for app in apps:
        objs += _app_objects(rng, app)
    objs += _namespace_rbac(rng, index, apps)
    if rng.random() < 0.5:
        objs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta("default-deny-ingress", ns),
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            }
        )
        if rng.random() < 0.6:
            peer: Obj = {"podSelector": {}}
            objs.append(
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "NetworkPolicy",
                    "metadata": _meta("allow-same-namespace", ns),
                    "spec": {
                        "podSelector": {},
                        "policyTypes": ["Ingress"],
                        "ingress": [{"from": [peer]}],
                    },
                }
            )
    return objs


def _namespace_rbac(rng: random.Random, index: int, apps: list[_App]) -> list[Obj]:
    ns = namespace_name(index)
    team = ns.split("-")[0]
    read = ["get", "list", "watch"]
    objs: list[Obj] = [
        _role("app-reader", ns, [_rule(["pods", "services", "configmaps"], read)]),
        _binding(
            "app-reader",
            ns,
            ("Role", "app-reader"),
            [_subject("Group", f"{team}-developers")]
            + [_sa_subject(app.name, ns) for app in apps[:2]],
        ),
    ]
    if rng.random() < 0.4:
        objs.append(_role("secret-reader", ns, [_rule(["secrets"], ["get", "list"])]))
        subjects = [_subject("User", f"oncall-{team}@example.com"), _sa_subject(apps[0].name, ns)]
        if rng.random() < 0.15:
            subjects.append(_subject("Group", "system:authenticated"))
        objs.append(_binding("secret-reader", ns, ("Role", "secret-reader"), subjects))
    app = rng.choice(apps)
    objs.append(
        _role(
            f"{app.name}-own-secrets",
            ns,
            [_named_rule([app.db_secret], ["get"])],
        )
    )
    objs.append(
        _binding(
            f"{app.name}-own-secrets",
            ns,
            ("Role", f"{app.name}-own-secrets"),
            [_sa_subject(app.name, ns)],
        )
    )
    roll = rng.random()
    if roll < 0.1:
        objs.append(_role("namespace-admin", ns, [_rule(["*"], ["*"], groups=["*"])]))
        subjects = [_subject("Group", f"{team}-admins")]
        objs.append(_binding("namespace-admin", ns, ("Role", "namespace-admin"), subjects))
    elif roll < 0.3:
        # Cluster-wide roles bound per namespace, some of them built in and absent from files.
        role = rng.choice(("edit", "view", "bench-secrets-auditor"))
        subjects = [_sa_subject("ci-deployer", namespace_name(max(index - 1, 0)))]
        objs.append(_binding(f"ci-{role}", ns, ("ClusterRole", role), subjects))
    return objs


def _cluster_wide_base() -> list[Obj]:
    read = ["get", "list", "watch"]
    aggregate = {"rbac.example.com/aggregate-to-secrets": "true"}
    return [
        _role("bench-secrets-auditor", None, [_rule(["secrets"], read)]),
        {
            "apiVersion": f"{_RBAC_GROUP}/v1",
            "kind": "ClusterRole",
            "metadata": _meta("bench-aggregate-secrets"),
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": aggregate}]},
            "rules": [],
        },
        _role("bench-secrets-writer", None, [_rule(["secrets"], ["create", "patch"])], **aggregate),
        _binding(
            "bench-auditors",
            None,
            ("ClusterRole", "bench-secrets-auditor"),
            [_subject("Group", "auditors")],
        ),
        _binding(
            "bench-aggregate",
            None,
            ("ClusterRole", "bench-aggregate-secrets"),
            [_subject("User", "vault-admin@example.com")],
        ),
    ]


def _cluster_block(rng: random.Random, block: int) -> list[Obj]:
    ns = namespace_name(block * 20)
    read = ["get", "list", "watch"]
    reader, operator = f"platform-reader-{block:03d}", f"secrets-operator-{block:03d}"
    reader_subject = _subject("Group", "system:authenticated" if rng.random() < 0.1 else "sre")
    return [
        _role(
            reader,
            None,
            [
                _rule(["pods", "services", "configmaps"], read),
                _rule(["deployments", "statefulsets"], read, groups=["apps"]),
            ],
        ),
        _role(operator, None, [_rule(["secrets"], [*read, "update", "patch"])]),
        _binding(reader, None, ("ClusterRole", reader), [reader_subject]),
        _binding(operator, None, ("ClusterRole", operator), [_sa_subject("default", ns)]),
    ]


def cluster_objects(objects: int, seed: int = DEFAULT_SEED) -> list[Obj]:
    """Return exactly *objects* objects of a synthetic cluster."""
    rng = random.Random(seed)  # noqa: S311 - fake data must repeat from a seed, not be secret
    out = _cluster_wide_base()
    index = 0
    while len(out) < objects:
        if index % 20 == 0:
            out += _cluster_block(rng, index // 20)
        out += _namespace_objects(rng, index)
        index += 1
    return out[:objects]


# --------------------------------------------------------------------------- who-can workload


def _whocan_cluster_roles(rng: random.Random, secret_names: list[str]) -> list[Obj]:
    """Return ClusterRoles from ``*`` on ``*`` down to ``get`` on a handful of named Secrets."""
    read = ["get", "list", "watch"]
    aggregate = {"rbac.example.com/aggregate-to-secret-readers": "true"}
    cluster_roles: list[Obj] = [
        _role("cr-everything", None, [_rule(["*"], ["*"], groups=["*"])]),
        _role("cr-secrets-all", None, [_rule(["secrets"], ["*"])]),
        _role("cr-secrets-read", None, [_rule(["secrets"], read)]),
        _role("cr-secrets-list", None, [_rule(["secrets"], ["list"])]),
        _role(
            "cr-secrets-write", None, [_rule(["secrets"], ["create", "update", "patch", "delete"])]
        ),
        _role("cr-core-read", None, [_rule(["*"], read)]),
        _role("cr-configmaps", None, [_rule(["configmaps"], read)]),
        _role("cr-pods-exec", None, [_rule(["pods/exec"], ["create"]), _rule(["pods"], ["get"])]),
        _role(
            "cr-apps-admin", None, [_rule(["deployments", "statefulsets"], ["*"], groups=["apps"])]
        ),
        _role("cr-metrics", None, [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]),
        {
            "apiVersion": f"{_RBAC_GROUP}/v1",
            "kind": "ClusterRole",
            "metadata": _meta("cr-aggregated-secret-readers"),
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": aggregate}]},
            "rules": [],
        },
        _role("cr-part-secrets-get", None, [_rule(["secrets"], ["get"])], **aggregate),
        _role("cr-part-secrets-watch", None, [_rule(["secrets"], ["watch"])], **aggregate),
    ]
    for i in range(20):
        named = sorted(rng.sample(secret_names, k=rng.randint(1, 25)))
        cluster_roles.append(_role(f"cr-named-{i:02d}", None, [_named_rule(named, ["get"])]))
    return cluster_roles


_WHOCAN_USERS: Final = tuple(f"user-{i:03d}@example.com" for i in range(800))
_WHOCAN_GROUPS: Final = tuple(f"team-{i:02d}" for i in range(60))


def _whocan_roles(
    rng: random.Random, ns: str, count: int, secret_names: list[str], out: list[Obj]
) -> list[str]:
    """Append *count* Roles of *ns* to *out*, from named Secrets to everything; return names."""
    read = ["get", "list", "watch"]
    names: list[str] = []
    for i in range(count):
        kind = rng.random()
        if kind < 0.3:
            named = sorted(rng.sample(secret_names, k=rng.randint(1, 50)))
            rules = [_named_rule(named, rng.sample(read, k=rng.randint(1, 3)))]
        elif kind < 0.45:
            rules = [_rule(["secrets"], rng.sample([*read, "update"], k=rng.randint(1, 4)))]
        elif kind < 0.55:
            rules = [_rule(["*"], ["*"], groups=["*"])]
        else:
            rules = [_rule(["pods", "configmaps", "services"], read)]
        name = f"role-{i:03d}"
        out.append(_role(name, ns, rules))
        names.append(name)
    return names


def _whocan_subjects(rng: random.Random, ns: str, service_accounts: list[str]) -> list[Obj]:
    """Return one to three subjects: users, teams, broad system groups, ServiceAccounts."""
    chosen: list[Obj] = []
    for _ in range(rng.randint(1, 3)):
        roll = rng.random()
        if roll < 0.45:
            chosen.append(_subject("User", rng.choice(_WHOCAN_USERS)))
        elif roll < 0.7:
            chosen.append(_subject("Group", rng.choice(_WHOCAN_GROUPS)))
        elif roll < 0.72:
            chosen.append(_subject("Group", "system:authenticated"))
        elif roll < 0.74:
            chosen.append(_subject("Group", f"system:serviceaccounts:{WHOCAN_NAMESPACE}"))
        else:
            sa_namespace = rng.choice((WHOCAN_NAMESPACE, ns))
            chosen.append(_sa_subject(rng.choice(service_accounts), sa_namespace))
    return chosen


def whocan_objects(
    *,
    secrets: int = 1000,
    bindings: int = 5000,
    namespaces: int = 50,
    seed: int = DEFAULT_SEED,
) -> list[Obj]:
    """Return one namespace of *secrets* Secrets and *bindings* (Cluster)RoleBindings in all.

    A tenth of the bindings are ClusterRoleBindings, four tenths RoleBindings in
    ``WHOCAN_NAMESPACE`` and the rest RoleBindings spread over *namespaces* others. Roles
    range from one named Secret to ``*`` on ``*``.
    """
    rng = random.Random(seed)  # noqa: S311 - fake data must repeat from a seed, not be secret
    target = WHOCAN_NAMESPACE
    others = [f"tenant-{i:03d}" for i in range(namespaces)]
    secret_names = [f"secret-{i:05d}" for i in range(secrets)]
    out: list[Obj] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns)} for ns in [target, *others]
    ]
    for i, name in enumerate(secret_names):
        if i % 10 == 0:
            out.append(_tls_secret(rng, name, target))
        else:
            out.append(
                _secret(name, target, {"password": _password(rng), "token": _token(rng, 24)})
            )
    service_accounts = [f"sa-{i:03d}" for i in range(200)]
    out += [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(sa, target)}
        for sa in service_accounts
    ]

    cluster_roles = _whocan_cluster_roles(rng, secret_names)
    out += cluster_roles
    cluster_role_names = [role["metadata"]["name"] for role in cluster_roles]

    target_roles = _whocan_roles(rng, target, 80, secret_names, out)
    other_roles = {ns: _whocan_roles(rng, ns, 4, secret_names, out) for ns in others}

    def subjects(ns: str) -> list[Obj]:
        return _whocan_subjects(rng, ns, service_accounts)

    cluster_count = bindings // 10
    target_count = bindings * 4 // 10
    other_count = bindings - cluster_count - target_count
    for i in range(cluster_count):
        role = ("ClusterRole", rng.choice(cluster_role_names))
        out.append(_binding(f"crb-{i:05d}", None, role, subjects(target)))
    for i in range(target_count):
        role = (
            ("Role", rng.choice(target_roles))
            if rng.random() < 0.7
            else ("ClusterRole", rng.choice(cluster_role_names))
        )
        out.append(_binding(f"rb-{i:05d}", target, role, subjects(target)))
    for i in range(other_count):
        ns = others[i % len(others)]
        role = (
            ("Role", rng.choice(other_roles[ns]))
            if rng.random() < 0.6
            else ("ClusterRole", rng.choice(cluster_role_names))
        )
        out.append(_binding(f"rb-{i:05d}", ns, role, subjects(ns)))
    return out


# --------------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class Summary:
    """What a generated folder holds."""

    path: str
    objects: int
    files: int
    bytes: int
    kinds: dict[str, int]
    seconds: float

    def as_json(self) -> dict[str, Any]:
        """Return the summary as JSON-ready values."""
        return {
            "path": self.path,
            "objects": self.objects,
            "files": self.files,
            "bytes": self.bytes,
            "kinds": self.kinds,
            "generate_seconds": round(self.seconds, 3),
        }


def _chunks(objects: Sequence[Obj], size: int) -> Iterator[Sequence[Obj]]:
    for start in range(0, len(objects), size):
        yield objects[start : start + size]


def write_objects(
    objects: Sequence[Obj], out: Path, *, per_file: int = DEFAULT_PER_FILE, started: float
) -> Summary:
    """Replace folder *out* with *objects*, *per_file* documents a file."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    total = 0
    files = 0
    for files, chunk in enumerate(_chunks(objects, per_file), start=1):
        text = to_yaml(chunk)
        (out / f"part-{files:04d}.yaml").write_text(text, encoding="utf-8")
        total += len(text)
    kinds = Counter(str(obj["kind"]) for obj in objects)
    return Summary(
        path=str(out),
        objects=len(objects),
        files=files,
        bytes=total,
        kinds=dict(sorted(kinds.items())),
        seconds=time.perf_counter() - started,
    )


def generate_cluster(
    out: Path, objects: int, *, seed: int = DEFAULT_SEED, per_file: int = DEFAULT_PER_FILE
) -> Summary:
    """Write a synthetic cluster of *objects* objects into folder *out*."""
    started = time.perf_counter()
    return write_objects(cluster_objects(objects, seed), out, per_file=per_file, started=started)


def generate_whocan(
    out: Path,
    *,
    secrets: int = 1000,
    bindings: int = 5000,
    seed: int = DEFAULT_SEED,
    per_file: int = DEFAULT_PER_FILE,
) -> Summary:
    """Write the who-can dataset into folder *out*."""
    started = time.perf_counter()
    objects = whocan_objects(secrets=secrets, bindings=bindings, seed=seed)
    return write_objects(objects, out, per_file=per_file, started=started)


def verify(out: Path, objects: Sequence[Obj]) -> None:
    """Parse every file of *out* back and raise ``ValueError`` unless it equals *objects*."""
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    parsed: list[Any] = []
    for path in sorted(out.glob("*.yaml")):
        parsed += yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader)
    if len(parsed) != len(objects):
        raise ValueError(f"{out}: {len(parsed)} documents read back, {len(objects)} written")
    for i, (back, sent) in enumerate(zip(parsed, objects, strict=True)):
        if back != sent:
            raise ValueError(f"{out}: document {i} ({sent['kind']}) differs after a round trip")


def main(argv: Sequence[str] | None = None) -> int:
    """Generate one dataset and print its summary as JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.synth", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to (re)create")
    parser.add_argument("--objects", type=int, default=10_000, help="objects in the scan dataset")
    parser.add_argument("--whocan", action="store_true", help="make the who-can dataset instead")
    parser.add_argument(
        "--secrets", type=int, default=1000, help="who-can: Secrets in the namespace"
    )
    parser.add_argument("--bindings", type=int, default=5000, help="who-can: (Cluster)RoleBindings")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--per-file", type=int, default=DEFAULT_PER_FILE, help="documents per file")
    parser.add_argument("--verify", action="store_true", help="parse the files back and compare")
    args = parser.parse_args(argv)
    make: Callable[[], list[Obj]]
    if args.whocan:
        make = lambda: whocan_objects(secrets=args.secrets, bindings=args.bindings, seed=args.seed)  # noqa: E731
    else:
        make = lambda: cluster_objects(args.objects, args.seed)  # noqa: E731
    started = time.perf_counter()
    objects = make()
    summary = write_objects(objects, args.out, per_file=args.per_file, started=started)
    if args.verify:
        try:
            verify(args.out, objects)
        except ValueError as exc:
            print(f"synth: {exc}")
            return 1
    print(json.dumps(summary.as_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
