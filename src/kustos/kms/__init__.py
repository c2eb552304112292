"""Protect (keys): a KMS v2 plugin for kube-apiserver, keys in an HSM or a local keyring.

Pure modules: ``keys`` (key records, ids, lifecycle rules) and ``envelope`` (the wrapped
ciphertext format and the contract's limits). Adapters: ``providers`` (the local keyring
file, PKCS#11 tokens), ``service`` (the gRPC servicer), ``serving`` (the asyncio server,
reload, metrics), ``reencrypting`` (rewriting stored objects through the API server).

May import: the kernel (``kustos.kube``, ``kustos.files``, ``kustos.errors``,
``kustos.sensitive``).
"""
