"""RBAC evaluation: roles, bindings, aggregation, rule matching and "who can".

Purely data-manipulative: functions over the object index, no I/O. Matching follows the
API server's own RBAC authorizer (``*`` in verbs, apiGroups and resources; ``*/sub`` for
any resource's subresource; ``resourceNames`` only constrain requests that name an object)
so that answers agree with a ``SubjectAccessReview``. ``reporting`` turns answers into
JSON documents and console text, still without a terminal library: the CLI prints them.

May import: ``kustos.kube`` (pure modules), ``kustos.errors``, ``kustos.conventions``.
"""
