"""Cryptographic primitives shared by more than one capability (kernel).

``certificates``: X.509 facts (expiry, renewal point) read by the scanner and the rotation
engine alike, and leaf issuance from a CA for the ``x509`` generator. ``age``: age keys
and files, the one place pyrage is used, for sealed Secrets and backups alike. ``sops``:
SOPS's file format (per-value AES-256-GCM, data keys wrapped per age recipient, MAC), for
sealed Secrets. Pure: bytes in, values out, no I/O. Imports only ``errors`` and
``sensitive``.
"""
