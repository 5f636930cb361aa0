"""The audit trail: the resource's own actions written into Airflow's event log (trail.py) and the
`audit` command's reading of it (query.py).

One line for any command that changes something (users, roles, teams, credentials rotate, ...):

    from airflow_resource import audit
    audit.record(s, "resource.users.add", account="alice", roles=["Viewer"])   # s: Settings or a Stack

or around the action, so a failure is recorded too (outcome "failed" and the error) and re-raised:

    with audit.action(s, "resource.credentials.rotate", secret=name):
        rotate(...)

Who is the OS user running the CLI (SUDO_USER under sudo); what is the event name (at most 60
characters, `resource.<command>.<action>`) and the details as JSON in the row's `extra`. A record never
makes the action fail: when the database cannot be reached it is kept in <home>/run/ and written at the
next start, and when even that fails the CLI warns.
"""

from airflow_resource.audit.trail import (BACKUP_RESTORE, CONTENT_ADD, CONTENT_REMOVE, MANAGE_ROLLBACK,  # noqa: F401
                                          MANAGE_SCALE, MANAGE_UPGRADE, action, flush_pending, os_user, record)
