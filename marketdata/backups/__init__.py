"""Encrypted, verified, rotated database backups and the restore drill (docs/backups.md)."""
