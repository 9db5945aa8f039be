"""Baselines on the same features and splits: Random Forest, logistic regression, class prior.

They see the feature vector at the window's last session (the RF of the original audit reached
AUC 0.68-0.82 this way, which showed that the signal exists).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BaselineConfig:
    rf_trees: int = 300
    rf_min_leaf: int = 25  # daily returns are noisy: deep trees memorise them
    rf_max_features: str = "sqrt"
    logistic_c: float = 0.1
    n_jobs: int = 2


@dataclass
class Baselines:
    """One fitted Random Forest and logistic regression per horizon, and the training prior."""

    random_forest: list
    logistic: list
    prior: np.ndarray  # (H,)

    def predict(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """X: (N, C) -> {"random_forest", "logistic", "prior"}: (N, H) probabilities."""
        rf = np.column_stack([m.predict_proba(X)[:, 1] for m in self.random_forest])
        lr = np.column_stack([m.predict_proba(X)[:, 1] for m in self.logistic])
        return {"random_forest": rf, "logistic": lr, "prior": np.tile(self.prior, (len(X), 1))}


def fit_baselines(X: np.ndarray, y: np.ndarray, config: BaselineConfig = BaselineConfig(), seed: int = 0) -> Baselines:
    """X: (N, C) features at t; y: (N, H) labels."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rfs, lrs = [], []
    for h in range(y.shape[1]):
        rf = RandomForestClassifier(n_estimators=config.rf_trees, min_samples_leaf=config.rf_min_leaf,
                                    max_features=config.rf_max_features, n_jobs=config.n_jobs, random_state=seed)
        rfs.append(rf.fit(X, y[:, h]))
        lr = make_pipeline(StandardScaler(), LogisticRegression(C=config.logistic_c, max_iter=2000))
        lrs.append(lr.fit(X, y[:, h]))
    return Baselines(random_forest=rfs, logistic=lrs, prior=y.mean(axis=0))
