"""What a service checks before it accepts traffic, so a broken start fails at once.

``bentoml serve`` imports the service module in its own process before it starts any
worker, and each worker imports it again. The module calls ``preflight`` at import: the
settings are validated and the model the worker would load is read and verified, and any
problem ends the process with one line that says what is wrong (and, for a model, which
file). A worker that failed later, in ``__init__``, would be restarted by BentoML every few
seconds for ever; a server that never starts is what an operator can see and fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import NoReturn

from data_contracts.settings import Settings, use_model_store
from serving.config import ServingConfig
from training.artifact_files import ArtifactError


class StartupRefused(SystemExit):
    """The service cannot start; the message is the one line printed for the operator."""


def refuse(service: str, problem: str) -> NoReturn:
    # SystemExit prints the line to stderr, once, and exits with status 1.
    raise StartupRefused(f"shopml {service} service refuses to start: {problem}")


def check_recommender(settings: Settings, config: ServingConfig) -> None:
    """The configured or promoted recommender loads and verifies (nothing promoted is fine:
    the service then answers with popularity and says so in /readyz)."""
    import bentoml

    from serving.experiments import POPULARITY, experiment_from_env
    from training.recommender.artifact import load_from_store
    from training.recommender.promotion import promoted_tag, tag_for

    # The store the workers will read: under `bentoml serve` this process's BentoML has fixed
    # its home before the service module could point it at the settings' store.
    home = use_model_store(settings)
    experiment = experiment_from_env("recommender")  # a malformed split: ValueError, one line
    try:
        if experiment is not None:
            tags = [tag_for(v.model, home=home) for v in experiment.variants if v.model != POPULARITY]
        else:
            tags = [t for t in [config.recommender_tag or promoted_tag(home=home)] if t is not None]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ArtifactError(f"the recommender promotion record is unreadable ({e!r})") from e
    for tag in dict.fromkeys(tags):
        try:
            load_from_store(tag, home=home)
        except bentoml.exceptions.NotFound as e:
            raise ArtifactError(f"recommender model {tag!r} is not in the model store ({e})") from e


def check_support(settings: Settings, config: ServingConfig) -> None:
    """The configured or promoted support model (every variant's, under a traffic split) exists
    and every one of its files verifies."""
    from serving.experiments import POPULARITY, experiment_from_env
    from training.artifact_files import verify
    from training.support.artifact import resolve_model, tag_for

    experiment = experiment_from_env("support")  # a malformed split: ValueError, one line
    specs = [v.model for v in experiment.variants] if experiment is not None else [config.support_tag]
    for spec in dict.fromkeys(specs):
        if spec == POPULARITY:
            raise ArtifactError("a support split has no popularity arm: name support versions")
        try:
            tag = tag_for(spec, settings) if spec else None
        except ValueError as e:
            raise ArtifactError(str(e)) from e
        path, _ = resolve_model(tag, settings)
        verify(path)


def preflight(service: str, check: Callable[[Settings, ServingConfig], None]) -> ServingConfig:
    """Validate the settings, point BentoML at the model store and run ``check``; exit with
    one line on the first problem. Call it before anything imports ``bentoml``."""
    try:
        settings = Settings.from_env()
        config = ServingConfig.from_env(settings)
    except ValueError as e:
        refuse(service, f"invalid configuration: {e}")
    use_model_store(settings)
    try:
        check(settings, config)
    except ArtifactError as e:
        refuse(service, f"its model cannot be loaded: {e}")
    return config
