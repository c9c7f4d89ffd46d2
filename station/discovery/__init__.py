"""What is attached now, keyed by physical port path (the slot); hotplug."""
