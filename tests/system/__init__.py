"""System tests: a booted Debian with the installer, and a private Tor network (marker system)."""
