"""The benchflash test suite."""
