"""Cryptographic primitives shared by more than one capability (kernel).

``certificates``: X.509 facts (expiry, renewal point) read by the scanner and the rotation
engine alike, and leaf issuance from a CA for the ``x509`` generator. ``sops``: SOPS's
file format (per-value AES-256-GCM, age recipients, MAC), for sealed Secrets. Pure: bytes in,
values out, no I/O. Imports only ``errors`` and ``sensitive``.
"""
