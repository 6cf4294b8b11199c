"""Flower's login in production: real credentials, never the example of .env.example."""

from __future__ import annotations

EXAMPLE_PASSWORDS = {"change-me", "admin", "password", "flower"}
MIN_PASSWORD_LENGTH = 12


def flower_auth_problem(value: str) -> str:
    """Why FLOWER_BASIC_AUTH (user:password[,user:password...]) will not do, or ""."""
    if not value.strip():
        return (
            "FLOWER_BASIC_AUTH must be set to user:password to start Flower with production "
            "settings: it shows every task and worker and can shut workers down"
        )
    for pair in value.split(","):
        user, _, password = pair.strip().partition(":")
        if not user or not password:
            return f"FLOWER_BASIC_AUTH must be user:password pairs, comma-separated, not {user!r}"
        if password in EXAMPLE_PASSWORDS:
            return (
                f"FLOWER_BASIC_AUTH still holds the example password of .env.example for "
                f"{user!r}: choose a real one (at least {MIN_PASSWORD_LENGTH} characters)"
            )
        if len(password) < MIN_PASSWORD_LENGTH:
            return (
                f"FLOWER_BASIC_AUTH: the password of {user!r} must be at least "
                f"{MIN_PASSWORD_LENGTH} characters"
            )
    return ""
