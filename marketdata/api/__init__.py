"""The versioned HTTP API (/api/v1/): market data, candles, collectors and health."""
