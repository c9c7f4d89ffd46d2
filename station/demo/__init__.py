"""`station demo`: a whole line on simulated devices, built with the project's own tools."""
