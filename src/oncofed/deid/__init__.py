"""De-identification: PS3.15 Annex E basic profile and options, keyed pseudonyms, verification.

``DeidStage`` is the ingest pipeline's mandatory stage; ``oncofed deid IN OUT`` the standalone tool.
"""

from oncofed.deid.keys import Keyring, node_key
from oncofed.deid.profile import DEFAULT_OPTIONS, Profile, build_profile
from oncofed.deid.stage import DeidStage, make_stage

__all__ = [
    "DEFAULT_OPTIONS",
    "DeidStage",
    "Keyring",
    "Profile",
    "build_profile",
    "make_stage",
    "node_key",
]
