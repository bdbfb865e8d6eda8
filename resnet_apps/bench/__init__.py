"""Benchmarks behind ``resnet-apps bench``; each module must import torch only inside ``run``."""
