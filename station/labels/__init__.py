"""Unit labels: what is printed for each passed board (ZPL for Zebra printers, a PNG preview), and the printers."""
