"""Plumbing shared by the services: settings, sessions, errors, pagination, health, logging."""
