"""Values from outside the cluster: secrets managers that Kustos reads and writes.

One adapter module per store (``vault``: HashiCorp Vault KV v2). An adapter logs in once,
reuses and renews its credential, bounds every request and turns each failure into one
``StoreError`` naming the path and the status, never a value or a token. Deciding *when*
to read (refresh intervals, change detection) belongs to the rotation engine and the
operator, not here.

``sealing`` is the other way values arrive from outside: Secrets kept in Git as
``SealedSecret`` files in SOPS's format (:mod:`kustos.crypto.sops` does the cryptography).
It is pure: manifests in, manifests out, no file, no cluster, no clock of its own.

This is a capability package: it may import the kernel (``kustos.errors``,
``kustos.sensitive``, ...), never the CLI, the harness or another capability.
"""
