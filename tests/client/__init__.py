"""Tests for the cloudsync MQTT client core (no Home Assistant)."""
