"""
### example_etl

Extracts Fisher's Iris measurements from `data/iris.csv`, a file that ships
next to this DAG. It then types and cleans the rows, adds a `petal_ratio`
column (petal length / width), and loads them into the PostgreSQL table
`example_etl_iris` through the connection `resource_postgres`. The last task
checks that the table holds exactly as many rows as were extracted.

Reruns are idempotent: every load replaces the table's contents in a single
transaction.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import dag, task

# Found relative to this file, so it works wherever the install copies dags/.
CSV_PATH = Path(__file__).parent / "data" / "iris.csv"
CONN_ID = "resource_postgres"
TABLE = "example_etl_iris"
MEASURES = ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")
SPECIES = {"setosa", "versicolor", "virginica"}

CREATE_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    row_id          integer PRIMARY KEY,  -- position in the CSV: the natural key
    sepal_length_cm numeric(4, 1) NOT NULL,
    sepal_width_cm  numeric(4, 1) NOT NULL,
    petal_length_cm numeric(4, 1) NOT NULL,
    petal_width_cm  numeric(4, 1) NOT NULL,
    petal_ratio     numeric(6, 3) NOT NULL,
    species         text NOT NULL
)"""
INSERT_SQL = f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s)"


@dag(
    dag_id="example_etl",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs all rewrite the same table; one at a time
    tags=["example", "etl", "postgres"],
    doc_md=__doc__,
)
def example_etl():
    # Keep 150 rows out of the task log; each task prints a one-line summary instead.
    @task(show_return_value_in_logs=False)
    def extract() -> list[dict[str, str]]:
        import csv

        # 150 short rows fit easily in an XCom. A bigger source would be
        # staged in a file or table, and only its path passed on.
        with CSV_PATH.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ValueError(f"{CSV_PATH} has no data rows")
        print(f"extracted {len(rows)} rows from {CSV_PATH}")
        return rows

    @task(show_return_value_in_logs=False)
    def transform(raw_rows: list[dict[str, str]]) -> list[list]:
        clean = []
        for row_id, raw in enumerate(raw_rows, start=1):
            # Accept both "setosa" and UCI's "Iris-setosa", with any case or spacing.
            species = raw["species"].strip().lower().removeprefix("iris-")
            sl, sw, pl, pw = (float(raw[c].strip()) for c in MEASURES)
            # A bad row fails the run instead of being dropped. Dropping it
            # would make the row count differ from the source.
            if species not in SPECIES or min(sl, sw, pl, pw) <= 0:
                raise ValueError(f"CSV line {row_id + 1} is invalid: {raw}")
            clean.append([row_id, sl, sw, pl, pw, round(pl / pw, 3), species])
        print(f"transformed {len(clean)} rows")
        return clean

    @task
    def load(rows: list[list]) -> int:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        conn = PostgresHook(postgres_conn_id=CONN_ID).get_conn()
        try:
            # One transaction: create if missing, empty, refill. Readers see
            # either the old full table or the new one, and a rerun never
            # duplicates rows. DELETE is used, not TRUNCATE, because
            # TRUNCATE is not MVCC-safe for concurrent readers.
            with conn.cursor() as cur:
                cur.execute(CREATE_SQL)
                cur.execute(f"DELETE FROM {TABLE}")
                cur.executemany(INSERT_SQL, rows)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()
        print(f"loaded {len(rows)} rows into {TABLE}")
        return len(rows)

    @task
    def check(extracted: list[dict[str, str]], loaded: int) -> int:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        count = PostgresHook(postgres_conn_id=CONN_ID).get_first(f"SELECT count(*) FROM {TABLE}")[0]
        if count != len(extracted) or loaded != len(extracted):
            raise ValueError(f"{TABLE} has {count} rows and load wrote {loaded}; extracted {len(extracted)}")
        print(f"{TABLE} holds {count} rows, as extracted")
        return count

    raw = extract()
    check(extracted=raw, loaded=load(transform(raw)))


example_etl()
