"""Games trained by gradient descent-ascent (task=gan): the schemes (`task`), the games with their
equilibria (`games`) and the phase-plane and sample pictures (`figures`)."""
