"""Image classification (task=digits, mnist, cifar, cifar100): the training loop (`task`), the
datasets as tensors on the device (`datasets`) and the networks (`nets`)."""
