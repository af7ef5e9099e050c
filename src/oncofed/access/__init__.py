"""Identities, roles, API tokens and access grants of a node."""
