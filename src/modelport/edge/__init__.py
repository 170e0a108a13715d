"""Models on devices: signed bundles (``bundle``), a fleet server (``fleet``) and an on-device
agent (``agent``) that pulls, verifies, checks and switches releases."""
