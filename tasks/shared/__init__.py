"""What several task families use: optimal transport between samples (`transport`), and a figure
kept open between runs saved as a cropped PNG (`png`)."""
