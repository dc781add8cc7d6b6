"""Policy optimisation on gridworlds (task=gridworld): exact and sampled policy gradient and natural
policy gradient (`task`) on the gymnasium environment it registers (`env`)."""
