"""Deployment profiles: YAML in, typed and validated dataclasses out."""

from mcmig.profiles.loader import ProfileError, load_deployment
from mcmig.profiles.model import Deployment, GatewayProfile, ServerProfile, SystemProfile

__all__ = [
    "Deployment",
    "GatewayProfile",
    "ProfileError",
    "ServerProfile",
    "SystemProfile",
    "load_deployment",
]
