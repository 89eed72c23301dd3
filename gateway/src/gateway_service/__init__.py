"""The gateway: the only public entry point of the system."""
