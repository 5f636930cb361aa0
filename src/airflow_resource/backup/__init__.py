"""Backup archives, pg_dump/pg_restore, restore, and upgrade/rollback between pinned sets.

Runs in the CLI, and in the scheduled-backup daemon as the service user.
"""
