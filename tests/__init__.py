"""Tests for the cloudsync integration."""
