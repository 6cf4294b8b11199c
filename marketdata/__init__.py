"""What is stored and what is derived from it: market data, raw trades and candles."""
