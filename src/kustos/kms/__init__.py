"""Protect (keys): a KMS v2 plugin for kube-apiserver, keys in an HSM or a local keyring.

Pure modules: ``keys`` (key records, ids, lifecycle rules), ``envelope`` (the wrapped
ciphertext format and the contract's limits) and ``stored`` (what etcd holds for a KMS v2
object). Adapters: ``providers`` (the local keyring
file, PKCS#11 tokens), ``service`` (the gRPC servicer), ``serving`` (the asyncio server,
reload, metrics), ``reencrypting`` (rewriting stored objects through the API server).

May import: the kernel (``kustos.kube``, ``kustos.files``, ``kustos.errors``,
``kustos.sensitive``).
"""
