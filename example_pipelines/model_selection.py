"""Model selection on the breast cancer data set that scikit-learn ships.

    python3 -m luigi --module example_pipelines.model_selection PickBest --local-scheduler

TrainModels fans a grid of 12 model configurations out into one element each (a fresh process
here, a pod on Kubernetes); each scores its model by 5-fold cross-validation. PickBest ranks them
from records(), each element's parameters and scores, without loading a single result, and writes
a small report. Run it twice: the second run finds every result in storage and computes nothing.
`kubeface results JOB` shows the same ranking, and the job's status page charts it.
"""

import json
import os

import luigi

from luigi_kubeface import KubefaceMapTask

MODELS = ("logistic_regression", "svm", "random_forest")
SETTINGS = {
    "logistic_regression": [0.01, 0.1, 1.0, 10.0],  # inverse regularization C
    "svm": [0.1, 1.0, 10.0, 100.0],  # C
    "random_forest": [2, 4, 8, 16],  # max_depth
    "nearest_neighbors": [1, 5, 15, 45],  # n_neighbors; not in the default grid, add it with --models
}


def make_model(model, setting):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if model == "logistic_regression":
        return make_pipeline(StandardScaler(), LogisticRegression(C=setting, max_iter=2000))
    if model == "svm":
        return make_pipeline(StandardScaler(), SVC(C=setting))
    if model == "random_forest":
        return RandomForestClassifier(max_depth=setting, n_estimators=50, random_state=0)
    if model == "nearest_neighbors":
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=setting))
    raise ValueError("unknown model %r: choose one of %s" % (model, ", ".join(SETTINGS)))


class TrainModels(KubefaceMapTask):
    """One element per (model, setting): cross-validated accuracy of that configuration."""

    folds = luigi.IntParameter(default=5)
    # The grid's shape is not part of the job's identity (significant=False), so extending or
    # reordering it reuses every element already computed.
    models = luigi.ListParameter(default=list(MODELS), significant=False)

    def grid(self):
        unknown = [m for m in self.models if m not in SETTINGS]
        if unknown:
            raise ValueError("unknown model(s) %s in --models: choose from %s" % (unknown, ", ".join(SETTINGS)))
        return [dict(model=m, setting=s) for m in self.models for s in SETTINGS[m]]

    def kubeface_overrides(self):
        return {"result_metric": "accuracy", "result_direction": "maximize"}  # ranks `kubeface results`, the page

    def shared_inputs(self):
        from sklearn.datasets import load_breast_cancer

        features, labels = load_breast_cancer(return_X_y=True)
        return {"features": features, "labels": labels}  # uploaded once, passed to every element

    def run_element(self, model, setting, features, labels):
        from sklearn.model_selection import cross_val_score

        scores = cross_val_score(make_model(model, setting), features, labels, cv=self.folds)
        print("%s setting=%s accuracy=%.4f" % (model, setting, scores.mean()))
        return {"accuracy": scores.mean(), "std": scores.std()}  # numpy scalars: the runner records both


class PickBest(luigi.Task):
    """Ranks the configurations by accuracy from their records and writes the best one and the ranking."""

    folds = luigi.IntParameter(default=5)
    models = luigi.ListParameter(default=list(MODELS))
    output_dir = luigi.Parameter(default="example-output")

    def requires(self):
        return TrainModels(folds=self.folds, models=self.models)

    def output(self):
        return luigi.LocalTarget(os.path.join(self.output_dir, "model_selection_%s.json" % "-".join(self.models)))

    def run(self):
        records = self.input().records()  # parameters and scores of every element; no result is loaded
        ranking = sorted(records, key=lambda r: -r["accuracy"])
        report = {"best": ranking[0], "ranking": ranking, "elements": len(records)}
        with self.output().open("w") as f:
            json.dump(report, f, indent=1)
        print("best model: %(model)s setting=%(setting)s accuracy=%(accuracy).4f" % ranking[0])
