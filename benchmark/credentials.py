"""Credentials never go through the config: a value given as a Hydra override is saved in the sweep's
``.hydra/overrides.yaml`` and ``multirun.yaml``, recorded in run params and tags (``sweep_overrides``) and printed in
the progress lines. So an override whose key names a secret (``password``, ``token``, ``secret``, ``api_key``...)
or whose value is a URL carrying a password (``http://user:pass@host``) stops the run before Hydra saves anything,
with where credentials go instead: the environment, read by MLflow's client itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

SECRET_WORDS = ("password", "passwd", "secret", "token", "api_key", "apikey", "access_key", "credential",
                "credentials", "private_key")  # fmt: skip
"""Words that make a config key a secret (one segment of the key, between dots or underscores)."""

_SECRET_KEY = re.compile(r"(?:^|[._])(?:" + "|".join(SECRET_WORDS) + r")(?:$|[._])", re.IGNORECASE)
_SECRET_IN_VALUE = re.compile(r"[{,]\s*['\"]?([\w.-]+)['\"]?\s*:")  # the keys of a dict given as a value
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/@:\s]+:[^/@\s]+@", re.IGNORECASE)

WHERE = (
    "credentials go in the environment, never in overrides (they would be saved in .hydra/, run params and tags): "
    "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN, for the tracking server "
    "(docs/how-to/clusters-and-team-server.md)"
)


def credential_problems(overrides: Sequence[str]) -> list[str]:
    """One line per override that carries a credential, naming its key (never its value) and where it goes."""
    problems = []
    for override in overrides:
        key, _, value = override.partition("=")
        key = key.lstrip("+~")
        inner = [k for k in _SECRET_IN_VALUE.findall(value) if _is_secret(k)]
        if _is_secret(key):
            problems.append(f"override {key}=... names a secret; {WHERE}")
        elif inner:
            problems.append(f"override {key}=... holds a secret ({', '.join(inner)}); {WHERE}")
        elif _URL_WITH_PASSWORD.search(value):
            problems.append(f"override {key}=... is a URL with a password in it; {WHERE}")
    return problems


def _is_secret(key: str) -> bool:
    """Whether a key names a secret: one of ``SECRET_WORDS`` as a segment of it, camelCase split
    (``apiKey``, ``accessToken``), ``.``, ``_`` and ``-`` as separators."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).replace("-", "_")
    return bool(_SECRET_KEY.search(snake))


def uri_problems(uri: str) -> list[str]:
    """The tracking URI (from ``tracking.uri`` or ``MLFLOW_TRACKING_URI``) must not carry a password either: it is
    saved in the sweep's state and printed."""
    if _URL_WITH_PASSWORD.search(uri):
        return [f"the tracking URI carries a password (user:password@host); {WHERE}"]
    return []
