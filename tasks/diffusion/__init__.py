"""Diffusion sampling with exact scores (task=diffusion): the task (`task`), the samplers of the
`sampler` group (`samplers`), the closed forms of the noised targets (`closed_forms`) and the
sampler's fitted order (`orders`)."""
