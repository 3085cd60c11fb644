
NASDAQAA{"source":"feed"}