"""The line runner: a state machine per slot, a worker per busy slot, events out."""
