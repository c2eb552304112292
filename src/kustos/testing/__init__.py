"""A real local control plane for tests and for ``kustos dev-cluster``.

``controlplane`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
a kwok controller (simulated nodes) as plain processes on loopback ports; ``pki`` makes
their certificates; ``binaries`` finds (or builds) the binaries in the cache;
``fixtures`` holds pytest fixtures built on them.

This is an adapter package: it starts processes and writes files. It may import the
kernel (``kustos.kube``, ``kustos.errors``, ...); only ``kustos.cli`` imports it.
"""
