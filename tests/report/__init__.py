"""Tests of runner/report: runner-report's figures, tables and verdicts, and unreadable folders."""
