"""Session fixtures for this area (registered in conftest.py)."""
