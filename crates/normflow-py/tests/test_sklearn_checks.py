"""scikit-learn's estimator checks on every estimator, with the checks that do not apply to
density estimators listed with the reason."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import normflow

# Small settings: the checks fit each estimator dozens of times on tiny data sets.
FAST = dict(epochs=3, hidden=(8,), layers=2)
ESTIMATORS = [
    normflow.RealNVP(**FAST),
    normflow.MAF(**FAST),
    normflow.NSF(**FAST),
    normflow.FlowMatching(hidden=(8,), max_steps=20),
    normflow.AnomalyDetector(flow_params=FAST),
]

# Checks that do not apply, per estimator class name: {check name: reason}.
EXPECTED_FAILURES = {
    "FlowMatching": {
        "check_methods_subset_invariance": "the adaptive ODE solver steps all rows of a call together, so a row's "
        "log-density moves with its batch, within the solver's tolerance (rtol 1e-5), not to the check's 1e-7",
    },
    "AnomalyDetector": {
        name: "the threshold is calibrated on rows held out from the flow's fit (calibration_frac), so that "
        "`contamination` is the false-positive rate on new normal rows; the check expects exactly that share of the "
        "training rows flagged, as when the offset is set on the training scores"
        for name in ["check_outliers_fit_predict", "check_outliers_train"]
    },
}


def expected_failed_checks(estimator):
    return EXPECTED_FAILURES.get(type(estimator).__name__, {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
