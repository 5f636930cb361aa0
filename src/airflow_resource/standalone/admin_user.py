"""Create or update the admin user through FAB's own security manager.

Run by the venv's Python as the service user, with this file's source on stdin,
so the password travels in the environment and never on a command line.
"""

import os
import sys


def main() -> int:
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    username = os.environ["APACHE_AIRFLOW_ADMIN_USER"]
    password = os.environ["APACHE_AIRFLOW_ADMIN_PASSWORD"]
    with get_application_builder() as appbuilder:
        sm = appbuilder.sm
        role = sm.find_role("Admin")
        if role is None:
            print("FAB role Admin is missing: was the database migrated?", file=sys.stderr)
            return 1
        user = sm.find_user(username=username)
        if user is None:
            if not sm.add_user(username, "Airflow", "Admin", f"{username}@localhost", role, password):
                print(f"could not create user {username}", file=sys.stderr)
                return 1
            print(f"created admin user {username}")
        else:
            sm.reset_password(user.id, password)
            if role not in user.roles:
                user.roles.append(role)
                sm.update_user(user)
            print(f"admin user {username} exists; password set from the resource's secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
