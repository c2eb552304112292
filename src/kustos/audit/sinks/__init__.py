"""Sinks: the wire formats Kustos forwards audit events and alerts in, and their senders.

``base`` holds the value every sink receives (:class:`~kustos.audit.sinks.base.Record`) and
what a delivery reports; ``syslog`` writes RFC 5424 messages with RFC 6587 octet counting
over TCP or TLS; ``http`` posts to a generic webhook, Splunk HEC, Elasticsearch/OpenSearch
``_bulk`` and Loki. The encoders are pure functions (tested against the documented wire
formats); the senders are the adapters, translating socket and HTTP failures into one
:class:`~kustos.errors.SinkError` that says whether a retry can help.

May import: ``kustos.audit.alerts``, ``kustos.sensitive``, ``kustos.errors``, ``httpx``.
"""
