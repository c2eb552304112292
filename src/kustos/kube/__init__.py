"""The Kubernetes kernel: one object model, one index, one reference parser.

Pure modules (no I/O; they may be imported anywhere):
    ``objects``     ``KubeObject`` and ``ObjectRef``, the values every capability reads
    ``documents``   YAML/JSON text → objects, with file and line, malformed ones reported
    ``index``       ``ObjectIndex``: the one in-memory structure every check reads
    ``references``  which Secrets a workload or ServiceAccount uses, and where

Adapters (I/O at the edge; imported by services and the CLI, never by pure code):
    ``loading``     files, folders and stdin → ``ObjectIndex``
    ``client``      the lightkube client factory (kubeconfig, context, in-cluster)
    ``listing``     a live cluster → ``ObjectIndex`` through paginated list calls
    ``discovery``   group/version/plural → kind and scope, from the API server's lists
    ``applying``    server-side apply of manifests (demo, tests)
    ``rollout``     rolling restarts and waiting for them to complete

May import: ``kustos.errors``, ``kustos.conventions``, ``kustos.sensitive``,
``kustos.files`` and libraries.
Must not import: ``kustos.cli``, ``kustos.testing`` or any capability package.
"""
