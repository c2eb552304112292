"""The ManagedSecret operator: a long-running asyncio service (``kustos operator run``).

Watches ManagedSecrets (and the Secrets and workloads that reloads need), keeps each
object's next due time in memory, and calls the rotation engine
(:mod:`kustos.rotation.rotating`) only when something is due: when nothing is, it sends
no request beyond its watches. One replica leads through a ``coordination.k8s.io`` Lease;
the others wait, so two replicas never rotate the same Secret. Serves ``/healthz``,
``/readyz`` and ``/metrics`` on one loopback-by-default port.

May import capabilities (``rotation``) and the kernel; never ``cli`` or ``testing``.
"""
