"""Create or update the admin user, the housekeeper's least-privilege user (FAB's own security manager)
and the connection resource_postgres (Airflow's Connection, in the metadata database, encrypted with the
Fernet key: tasks get it through the Execution API, no process has it in its environment).

Run by the venv's Python as the service user, with this file's source on stdin,
so the passwords travel in the environment and never on a command line.
"""

import os
import sys

# The pool hold (daemons/pool_hold.py): it lists and edits pools and keeps their slots in one Variable.
HOUSEKEEPER_PERMISSIONS = [
    ("can_read", "Pools"), ("can_edit", "Pools"),
    ("can_read", "Variables"), ("can_create", "Variables"), ("can_edit", "Variables"), ("can_delete", "Variables"),
]


def ensure_user(sm, username: str, password: str, role, first: str, last: str) -> bool:
    user = sm.find_user(username=username)
    if user is None:
        if not sm.add_user(username, first, last, f"{username}@localhost", role, password):
            print(f"could not create user {username}", file=sys.stderr)
            return False
        print(f"created user {username}")
        return True
    sm.reset_password(user.id, password)
    # Exactly this role: an older housekeeper user, or one changed by hand, loses anything else.
    if list(user.roles) != [role] and role.name != "Admin":
        user.roles = [role]
        sm.update_user(user)
    elif role not in user.roles:
        user.roles.append(role)
        sm.update_user(user)
    print(f"user {username} exists; password set from the resource's secrets")
    return True


def ensure_connection(conn_id: str, uri: str) -> None:
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        existing = session.query(Connection).filter(Connection.conn_id == conn_id).one_or_none()
        wanted = Connection(conn_id=conn_id, uri=uri)
        if existing is None:
            session.add(wanted)
            print(f"created connection {conn_id}")
        elif existing.get_uri() != wanted.get_uri():
            for attr in ("conn_type", "host", "port", "schema", "login"):
                setattr(existing, attr, getattr(wanted, attr))
            existing.set_password(wanted.password)
            existing.set_extra(wanted.extra)
            print(f"updated connection {conn_id}")


def main() -> int:
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    env = os.environ
    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        admin = sm.find_role("Admin")
        if admin is None:
            print("FAB role Admin is missing: was the database migrated?", file=sys.stderr)
            return 1
        if not ensure_user(sm, env["APACHE_AIRFLOW_ADMIN_USER"], env["APACHE_AIRFLOW_ADMIN_PASSWORD"], admin,
                           "Airflow", "Admin"):
            return 1
        if env.get("APACHE_AIRFLOW_HOUSEKEEPER_USER"):
            role_name = env["APACHE_AIRFLOW_HOUSEKEEPER_ROLE"]
            sm.bulk_sync_roles([{"role": role_name, "perms": HOUSEKEEPER_PERMISSIONS}])
            role = sm.find_role(role_name)
            wanted = set(HOUSEKEEPER_PERMISSIONS)
            for perm in list(role.permissions):  # nothing beyond the list, also after a hand edit
                if (perm.action.name, perm.resource.name) not in wanted:
                    sm.remove_permission_from_role(role, perm)
            if not ensure_user(sm, env["APACHE_AIRFLOW_HOUSEKEEPER_USER"], env["APACHE_AIRFLOW_HOUSEKEEPER_PASSWORD"],
                               role, "Resource", "Housekeeper"):
                return 1
    if env.get("APACHE_AIRFLOW_DATA_CONN_ID"):
        ensure_connection(env["APACHE_AIRFLOW_DATA_CONN_ID"], env["APACHE_AIRFLOW_DATA_CONN_URI"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
