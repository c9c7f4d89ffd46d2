"""Device families behind one interface: describe, identify, flash, verify, restart."""
