"""Watch: audit policy, receiver, tamper-evident archive, detectors and forwarding."""
