"""Rotate: ManagedSecret generators, schedules, versions and the rotation state machine.

Pure logic lives here (generators take their randomness and clock as arguments, planning
is a function of the resource, its versions and the time); the Kubernetes and PostgreSQL
adapters are the modules named ``*ing.py`` that say so in their docstrings. May import the
kernel (``kube``, ``files``, ``errors``, ``conventions``, ``sensitive``); never ``cli`` or
``testing``.
"""
