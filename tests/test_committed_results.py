"""Every committed result still answers its profile's config, so the book build never retrains.

A result whose config hash no longer matches the code would make `make book` train a whole profile
(an hour or more) instead of reading the file; this test fails first, naming the file to refresh.
"""
import pytest

from odecore import profiles, results
from odecore.experiments import adjoint, cnf, latent_ode, mnist

CONFIGS = {
    "adjoint": adjoint.PROFILES,
    "mnist": mnist.PROFILES,
    "mnist_nfe_ablation": mnist.NFE_ABLATION_PROFILES,
    "cnf_density": cnf.DENSITY_PROFILES,
    "cnf_mle": cnf.MLE_PROFILES,
    "latent_ode": latent_ode.PROFILES,
    "latent_ode_poisson": latent_ode.POISSON_PROFILES,
    "latent_ode_sampling": latent_ode.SAMPLING_PROFILES,
    "latent_ode_coverage": latent_ode.COVERAGE_PROFILES,
    "latent_ode_density": latent_ode.DENSITY_PROFILES,
}


@pytest.mark.parametrize("experiment", sorted(CONFIGS))
def test_committed_results_match_their_config(experiment, monkeypatch):
    monkeypatch.delenv("ODECORE_RESULTS_DIR")  # look at the committed data/results/
    for profile in results.available_profiles(experiment):
        if profile == "smoke":
            continue
        record = results.load(experiment, profile)
        expected = results.config_hash(CONFIGS[experiment][profile])
        assert record["config_hash"] == expected, (
            f"{results.path_for(experiment, profile).name} was made with another config than "
            f"PROFILES[{profile!r}]: re-run python -m odecore.experiments... --profile {profile}")


def test_every_result_name_is_covered():
    from odecore.experiments import MODULES

    assert set(MODULES) == set(CONFIGS)
    assert set(profiles.PROFILES) >= {p for c in CONFIGS.values() for p in c}
