"""Protect (backup): encrypted, verifiable backups of Secrets in the age format."""
