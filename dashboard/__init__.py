"""The dashboard: live web pages of the markets and the collectors, served at /."""
