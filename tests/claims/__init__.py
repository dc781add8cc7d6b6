"""Tests of runner/claims: runner-claim and the fast claims."""
