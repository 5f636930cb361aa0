"""The supervised stack: component table, supervisord, probes, install, start, stop, status.

Runs in the CLI, as root or as the operator; it runs every component as the service user.
"""
