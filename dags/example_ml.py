"""
### example_ml

Trains and evaluates a small scikit-learn classifier (a standard scaler
followed by logistic regression) on the Wine recognition data that ships
with scikit-learn, so no network is needed.

Writes the train/test split, `model.joblib` and `metrics.json` to
`$APACHE_AIRFLOW_DATA_DIR/example_ml/`. `evaluate` fails if test accuracy is
below `ACCURACY_FLOOR`. XCom carries only file paths and the metrics.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pendulum
from airflow.sdk import dag, task

# Wine is an easy data set: with this seed the model scores 1.0 on the test
# quarter. The 0.85 floor allows for other scikit-learn versions and still
# catches a broken pipeline.
ACCURACY_FLOOR = 0.85
SEED = 42  # same split and model every run


def _out_dir() -> Path:
    # The product sets APACHE_AIRFLOW_DATA_DIR for every task. Tasks on the
    # one machine share that folder, so files written by one task are there
    # for the next. The temp-dir fallback is for runs outside the product,
    # such as `airflow dags test`.
    base = os.environ.get("APACHE_AIRFLOW_DATA_DIR") or Path(tempfile.gettempdir()) / "airflow-resource-data"
    out = Path(base) / "example_ml"
    out.mkdir(parents=True, exist_ok=True)
    return out


@dag(
    dag_id="example_ml",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # runs all write the same file names; one at a time
    tags=["example", "ml", "scikit-learn"],
    doc_md=__doc__,
)
def example_ml():
    @task
    def prepare() -> str:
        # Heavy imports stay inside tasks, so parsing the DAG stays fast.
        import numpy as np
        from sklearn.datasets import load_wine
        from sklearn.model_selection import train_test_split

        X, y = load_wine(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=SEED)
        path = _out_dir() / "wine_split.npz"
        np.savez(path, X_train=X_train, X_test=X_test, y_train=y_train, y_test=y_test)
        return str(path)

    @task
    def train(split_path: str) -> str:
        import joblib
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        with np.load(split_path) as split:
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=SEED))
            model.fit(split["X_train"], split["y_train"])
        path = _out_dir() / "model.joblib"
        joblib.dump(model, path)
        return str(path)

    @task
    def evaluate(split_path: str, model_path: str) -> dict:
        import json

        import joblib
        import numpy as np
        import sklearn
        from sklearn.metrics import accuracy_score, f1_score

        model = joblib.load(model_path)
        with np.load(split_path) as split:
            n_train, y_test, y_pred = len(split["y_train"]), split["y_test"], model.predict(split["X_test"])
        metrics = {
            "accuracy": round(float(accuracy_score(y_test, y_pred)), 4),
            "f1_macro": round(float(f1_score(y_test, y_pred, average="macro")), 4),
            "n_train": int(n_train),
            "n_test": int(len(y_test)),
            "model": "StandardScaler + LogisticRegression",
            "sklearn_version": sklearn.__version__,
        }
        # Write the metrics before the threshold check, so a failed run
        # still leaves them to inspect.
        (_out_dir() / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"metrics: {metrics}")
        if metrics["accuracy"] < ACCURACY_FLOOR:
            raise ValueError(f"accuracy {metrics['accuracy']} is below the floor {ACCURACY_FLOOR}")
        return metrics

    split = prepare()
    evaluate(split, train(split))


example_ml()
