"""Exchange configuration: the JSON schema (pure), strict file reading, and model storage."""
