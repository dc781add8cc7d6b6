"""What several task families use: optimal transport between samples (`transport`)."""
