"""Deployment profiles: YAML in, typed and validated dataclasses out."""

from mcmig.profiles.loader import load_deployment
from mcmig.profiles.model import Deployment, GatewayProfile, ServerProfile, SystemProfile
from mcmig.profiles.node import ProfileError

__all__ = [
    "Deployment",
    "GatewayProfile",
    "ProfileError",
    "ServerProfile",
    "SystemProfile",
    "load_deployment",
]
