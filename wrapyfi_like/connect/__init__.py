"""The user-facing layer: the decorator, modes, publishers and listeners."""
