"""Wire protocols as clients over a tiny transport: DFU 1.1 + DfuSe, listening mode + YModem."""
