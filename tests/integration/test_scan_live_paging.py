"""Listing a live cluster page by page: every object once, whatever the page size.

Aspects: with pages of 7 objects (so that the API server's ``continue`` token is followed
many times) the index holds exactly the objects of one large page, in the same order,
with the same bodies; Secret values read from raw pages are ``Sensitive`` and equal to
what was written; a scan of the namespace gives the same report either way.
"""

from __future__ import annotations

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ConfigMap, Secret

from kustos.kube.listing import list_cluster
from kustos.scan.checking import scan_input
from kustos.scan.reporting import to_json
from kustos.scan.scanning import scan
from kustos.sensitive import Sensitive

pytestmark = pytest.mark.integration
COUNT = 40


def test_small_pages_read_every_object_once(kube: Client, namespace: str) -> None:
    for i in range(COUNT):
        kube.create(
            Secret(
                metadata=ObjectMeta(name=f"s-{i:02d}", namespace=namespace),
                stringData={"password": f"canary-{i:02d}-Zq8v"},
            )
        )
        kube.create(
            ConfigMap(metadata=ObjectMeta(name=f"c-{i:02d}", namespace=namespace), data={"k": "v"})
        )
    kinds = ["Secret", "ConfigMap", "ServiceAccount"]
    small = list_cluster(kube, namespaces=[namespace], kinds=kinds, chunk_size=7)
    large = list_cluster(kube, namespaces=[namespace], kinds=kinds, chunk_size=1000)

    assert [o.ref for o in small] == [o.ref for o in large]
    assert len(small.of_kind("Secret")) == COUNT
    assert len(small.of_kind("ConfigMap")) >= COUNT  # kube-root-ca.crt is there too
    assert not small.duplicates
    secret = small.secret(namespace, "s-03")
    assert secret is not None
    value = secret.body["data"]["password"]
    assert isinstance(value, Sensitive)
    assert value.reveal() == b"canary-03-Zq8v"
    assert to_json(scan(scan_input(small, live=True))) == to_json(
        scan(scan_input(large, live=True))
    )
