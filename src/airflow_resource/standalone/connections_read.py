"""Print connections with their passwords, decrypted with the Fernet key, as one JSON line on stdout:
what `connections get --show-secrets` and `connections export` need and the REST API withholds by
design (it answers "***" for every password).

Run by the venv's Python as the service user, with this file's source on stdin and the metadata
database and Fernet key in its environment; APACHE_AIRFLOW_CONN_IDS names the connections (comma-
separated; empty: all of them), APACHE_AIRFLOW_CONN_SKIP those to leave out.
"""

import json
import os
import sys

FIELDS = ("conn_type", "description", "host", "login", "schema", "port")


def main() -> int:
    from airflow.models import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    wanted = [c for c in os.environ.get("APACHE_AIRFLOW_CONN_IDS", "").split(",") if c]
    skip = {c for c in os.environ.get("APACHE_AIRFLOW_CONN_SKIP", "").split(",") if c}
    out = []
    with create_session() as session:
        query = select(Connection).order_by(Connection.conn_id)
        if wanted:
            query = query.where(Connection.conn_id.in_(wanted))
        for conn in session.scalars(query):
            if conn.conn_id in skip:
                continue
            item = {"connection_id": conn.conn_id, **{f: getattr(conn, f) for f in FIELDS}}
            item["password"] = conn.password
            item["extra"] = conn.extra
            out.append(item)
    sys.stdout.write(json.dumps({"connections": out}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
