"""Diffusion sampling with exact scores (task=diffusion): the task (`task`), the samplers of the
`sampler` group (`samplers`) and the closed forms of the noised targets (`closed_forms`)."""
